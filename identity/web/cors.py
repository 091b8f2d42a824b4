"""CORS for the endpoints browsers call directly, only for origins some client registered."""

import time

from flask import Flask, current_app, request
from sqlalchemy import select

from ..extensions import db
from ..models import Client

CORS_PATHS = ("/connect/token", "/connect/userinfo", "/connect/revocation", "/.well-known/openid-configuration", "/localapi/")
ALLOWED_HEADERS = "Authorization, Content-Type"


def allowed_origins() -> set[str]:
    """Every client's allowed_cors_origins, re-read every few seconds."""
    cache = current_app.extensions.setdefault("identity_cors", {"at": -1e9, "origins": set()})
    if time.monotonic() - cache["at"] > current_app.config["SIGNING_KEY_RELOAD_SECONDS"]:
        origins = set()
        for row in db.session.scalars(select(Client.allowed_cors_origins)):
            origins.update(o.rstrip("/") for o in row or [])
        cache.update(at=time.monotonic(), origins=origins)
    return cache["origins"]


def _applies() -> str | None:
    origin = request.headers.get("Origin")
    if not origin or not request.path.startswith(CORS_PATHS):
        return None
    return origin if origin in allowed_origins() else None


def preflight():
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        origin = _applies()
        response = current_app.make_response(("", 204))
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
        return response
    return None


def add_headers(response):
    origin = _applies()
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate, Retry-After"
        response.vary.add("Origin")
    return response


def init_app(app: Flask) -> None:
    app.before_request(preflight)
    app.after_request(add_headers)
