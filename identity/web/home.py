"""The home page and the session diagnostics page."""

from datetime import datetime, timezone

from flask import Blueprint, render_template
from flask_login import current_user, login_required

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Show the product, the signed-in user, and where discovery lives."""
    return render_template("home.html", user=current_user)


@bp.get("/diagnostics")
@login_required
def diagnostics():
    """Show the signed-in session's claims and authentication time."""
    user = current_user.user
    claims = {"sub": user.subject, "preferred_username": user.username, "name": user.name, "email": user.email,
              "sid": current_user.public_sid, "auth_time": current_user.auth_time}
    auth_time = datetime.fromtimestamp(current_user.auth_time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return render_template("diagnostics.html", claims=claims, auth_time=auth_time, sid=current_user.public_sid)
