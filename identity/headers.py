"""Security headers on every response, a request id, and structured request logs."""

import json
import logging
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, g, has_request_context, request
from flask.logging import default_handler

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'{form_targets}"
)
NO_STORE_PREFIXES = ("/account/", "/consent", "/connect/", "/localapi/", "/diagnostics")

log = logging.getLogger("identity.requests")


def allow_form_target(uri: str | None) -> None:
    """Let this page's form (and the redirects after it) reach a client's validated redirect URI.

    Browsers apply form-action to every redirect after a form post, so a sign-in or consent
    form that ends at the client needs the client's origin (or private-use scheme) listed.
    """
    if not uri:
        return
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        source = f"{parts.scheme}://{parts.netloc}"
    elif parts.scheme and parts.scheme.replace(".", "").replace("-", "").replace("+", "").isalnum():
        source = f"{parts.scheme}:"
    else:
        return
    g.setdefault("form_targets", set()).add(source)


def _start_request() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    g.request_started = time.perf_counter()


def _finish_response(response):
    headers = response.headers
    targets = "".join(" " + t for t in sorted(g.get("form_targets", ())))
    headers.setdefault("Content-Security-Policy", CSP.format(form_targets=targets))
    headers.setdefault("X-Frame-Options", "DENY")
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Referrer-Policy", "same-origin")  # same-origin: Flask-WTF checks the Referer on HTTPS
    if request.is_secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.path.startswith(NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    headers["X-Request-Id"] = g.get("request_id", "")
    if log.isEnabledFor(logging.INFO):
        # the path only: query strings can hold codes and tokens
        log.info(json.dumps({
            "request_id": g.get("request_id"), "method": request.method, "path": request.path,
            "status": response.status_code, "ms": round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 1),
            "ip": request.remote_addr,
        }))
    return response


class RequestIdFilter(logging.Filter):
    """Copy the request id onto every record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_app_log(app: Flask) -> None:
    """The app's own errors as JSON lines carrying the request id, like the request lines."""
    app.logger.addFilter(RequestIdFilter())
    if app.config["LOG_REQUESTS"] and default_handler in app.logger.handlers:
        default_handler.setFormatter(JsonFormatter())


def _configure_request_log(app: Flask) -> None:
    """One JSON line per request on stderr (gunicorn collects it), unless turned off."""
    if not app.config["LOG_REQUESTS"] or log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    # Authlib logs issued tokens at DEBUG ("Issue token ..."): never let those records exist.
    logging.getLogger("authlib").setLevel(logging.INFO)
    _configure_request_log(app)
    _configure_app_log(app)
    app.before_request(_start_request)
    app.after_request(_finish_response)
