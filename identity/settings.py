"""Settings derived at start-up: the secret key, cookie flags, proxy trust."""

import os
import secrets
from datetime import timedelta

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


SIGNING_ALGS = ("RS256", "ES256")


class ConfigurationError(RuntimeError):
    pass


def is_development(app: Flask) -> bool:
    return app.config["ENVIRONMENT"] in ("development", "testing")


def _development_secret_key(app: Flask) -> str:
    """Generate a key once and keep it in instance/, so restarts do not sign everyone out."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        app.logger.warning("generated a development SECRET_KEY in %s; set FLASK_SECRET_KEY in production", path)
    with open(path) as f:
        return f.read().strip()


def init_app(app: Flask) -> None:
    cfg = app.config
    if not cfg.get("SECRET_KEY"):
        if not is_development(app):
            raise ConfigurationError(
                "SECRET_KEY is required in production: set FLASK_SECRET_KEY "
                "(or FLASK_ENVIRONMENT=development for a local demo)"
            )
        cfg["SECRET_KEY"] = _development_secret_key(app)
    secure = cfg["SESSION_COOKIE_SECURE"]
    if secure is None:
        secure = not is_development(app)
    cfg["SESSION_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_DURATION"] = timedelta(seconds=int(cfg["REMEMBER_COOKIE_DURATION_SECONDS"]))
    for name in ("ACCESS_TOKEN_SIGNING_ALG", "ID_TOKEN_SIGNING_ALG"):
        if cfg[name] not in SIGNING_ALGS:
            raise ConfigurationError(f"{name} must be one of {', '.join(SIGNING_ALGS)}, not {cfg[name]!r}")
    if cfg["PASSWORD_MAX_LENGTH"] < 64:
        raise ConfigurationError("PASSWORD_MAX_LENGTH must allow at least 64 characters")
    hops = int(cfg["TRUST_PROXY_HOPS"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
