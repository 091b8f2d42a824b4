"""The issuer identifier: FLASK_ISSUER, else the request's scheme and host."""

from flask import current_app, request


def issuer() -> str:
    configured = current_app.config.get("ISSUER")
    if configured:
        return configured.rstrip("/")
    return request.host_url.rstrip("/")
