"""The issuer identifier: FLASK_ISSUER, else the request's scheme and host."""

from flask import request

from ..current import current_application


def configured_issuer() -> str | None:
    """FLASK_ISSUER as every document and token names it (without a trailing slash), or None."""
    return (current_application().config.get("ISSUER") or "").rstrip("/") or None


def issuer() -> str:
    return configured_issuer() or request.host_url.rstrip("/")
