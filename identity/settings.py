"""Settings derived at start-up: the secret key, cookie flags, proxy trust."""

import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

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


def _check_issuer(app: Flask) -> None:
    """An issuer is an https URL (http only in development) without query or fragment (OIDC Discovery 3)."""
    issuer = app.config.get("ISSUER")
    if not issuer:
        return
    parts = urlsplit(issuer)
    schemes = ("http", "https") if is_development(app) else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment or "#" in issuer:
        raise ConfigurationError(
            f"ISSUER must be an {' or '.join(schemes)} URL without query or fragment, not {issuer!r}"
        )


def init_app(app: Flask) -> None:
    cfg = app.config
    if not cfg.get("SECRET_KEY"):
        if not is_development(app):
            raise ConfigurationError(
                "SECRET_KEY is required in production: set FLASK_SECRET_KEY "
                "(or FLASK_ENVIRONMENT=development for a local demo)"
            )
        cfg["SECRET_KEY"] = _development_secret_key(app)
    if not cfg.get("ISSUER") and not is_development(app):
        # taken from the Host header otherwise: anyone could name the issuer of a served document
        raise ConfigurationError(
            "ISSUER is required in production: set FLASK_ISSUER to the public URL, e.g. https://id.example.com "
            "(or FLASK_ENVIRONMENT=development for a local demo)"
        )
    secure = cfg["SESSION_COOKIE_SECURE"]
    if secure is None:
        secure = not is_development(app)
    cfg["SESSION_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_DURATION"] = timedelta(seconds=int(cfg["REMEMBER_COOKIE_DURATION_SECONDS"]))
    for name in ("ACCESS_TOKEN_SIGNING_ALG", "ID_TOKEN_SIGNING_ALG"):
        if cfg[name] not in SIGNING_ALGS:
            raise ConfigurationError(f"{name} must be one of {', '.join(SIGNING_ALGS)}, not {cfg[name]!r}")
    _check_issuer(app)
    cache = cfg["BEARER_CACHE_SECONDS"]
    if isinstance(cache, bool) or not isinstance(cache, (int, float)) or not 0 <= cache <= 5:
        raise ConfigurationError(f"BEARER_CACHE_SECONDS must be a number of seconds from 0 to 5, not {cache!r}")
    if cfg["PASSWORD_MAX_LENGTH"] < 64:
        raise ConfigurationError("PASSWORD_MAX_LENGTH must allow at least 64 characters")


def trust_proxies(app: Flask) -> None:
    """Outermost WSGI layer: take client address, scheme and host from TRUST_PROXY_HOPS proxies."""
    hops = int(app.config["TRUST_PROXY_HOPS"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
