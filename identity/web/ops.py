"""Health and readiness for load balancers and orchestrators."""

from flask import Blueprint, jsonify

from ..extensions import limiter
from ..services.readiness import readiness

bp = Blueprint("ops", __name__)
# a load balancer probes every instance from the same few addresses, counted in the limits' shared
# store: a probe refused for the limit would take a healthy instance out of service
limiter.exempt(bp)


@bp.get("/healthz")
def healthz():
    """Answer 200 while the process serves."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Answer 200 when the database is reachable, the schema current (or, once this process has
    served, upgraded by a newer release) and a signing key loaded."""
    problem = readiness()
    if problem:
        response = jsonify(status="unavailable", reason=problem)
        response.status_code = 503
    else:
        response = jsonify(status="ready")
    response.headers["Cache-Control"] = "no-store"
    return response
