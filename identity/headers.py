"""Security headers on every response, a request id, and structured request logs."""

import json
import logging
import secrets
import time

from flask import Flask, g, request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
NO_STORE_PREFIXES = ("/account/", "/consent", "/connect/", "/localapi/", "/diagnostics")

log = logging.getLogger("identity.requests")


def _start_request() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
    g.request_started = time.perf_counter()


def _finish_response(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Referrer-Policy", "same-origin")  # same-origin: Flask-WTF checks the Referer on HTTPS
    if request.is_secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.path.startswith(NO_STORE_PREFIXES) or request.path == "/connect/token":
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


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_response)
