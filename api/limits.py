"""Rate limits of /localapi (Flask-Limiter), read from each app's settings at request time."""

import hashlib

from flask import current_app, request

from identity.extensions import client_network


def token_key() -> str:
    """Key a limit by bearer token (its SHA-256, never the token), or by client address without one."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()
    return "ip:" + client_network()


def default_limit() -> str:
    """Per client IP on every route (RATELIMIT_DEFAULT)."""
    return current_app.config["RATELIMIT_DEFAULT"]


def email_limit() -> str:
    """Per access token on verification mails and address changes together (RATELIMIT_EMAIL), not per
    client IP: the users behind one carrier NAT address would share it (the per-IP limit here is
    RATELIMIT_DEFAULT, and RATELIMIT_SENSITIVE on the address change, as on a password change)."""
    return current_app.config["RATELIMIT_EMAIL"]


def per_token_limit() -> str:
    """Per access token on password changes (RATELIMIT_PER_TOKEN)."""
    return current_app.config["RATELIMIT_PER_TOKEN"]
