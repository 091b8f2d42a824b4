"""CORS for the endpoints browsers call directly, only for origins some client registered."""

from flask import Flask
from sqlalchemy.exc import DBAPIError
from werkzeug.http import parse_set_header

from ..services.clients import cors_origins

ALLOWED_HEADERS = "Authorization, Content-Type"
# what a browser app may read of an answer: the challenge, when to retry, and the rate-limit
# headers RATELIMIT_HEADERS_ENABLED adds (the local API's OpenAPI document lists them)
EXPOSED_HEADERS = "WWW-Authenticate, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
LOCAL_API = "/localapi/"
CORS_PATHS = ("/connect/token", "/connect/userinfo", "/connect/revocation", "/.well-known/openid-configuration", LOCAL_API)


def allowed_methods(path: str) -> str:
    """The methods a preflight allows: the local API's routes also change (PUT) and end (DELETE)."""
    return "GET, POST, PUT, DELETE" if path.startswith(LOCAL_API) else "GET, POST"


class Cors:
    """WSGI layer: preflights answered here, and the allow headers added to the actual responses.

    Only a request with an Origin header on one of CORS_PATHS is looked at, so every other
    request (servers, mobile apps, pages) passes through untouched and without Flask hooks.
    """

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        is_preflight = environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        origin = environ.get("HTTP_ORIGIN")
        if origin and environ.get("PATH_INFO", "").startswith(CORS_PATHS):
            origin = origin if self._allowed(origin) else None
        else:
            origin = None
        if is_preflight:
            headers = [("Content-Type", "text/plain"), ("Content-Length", "0"), ("Vary", "Origin")]
            if origin:
                headers += [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Methods", allowed_methods(environ.get("PATH_INFO", ""))),
                            ("Access-Control-Allow-Headers", ALLOWED_HEADERS), ("Access-Control-Max-Age", "600")]
            start_response("204 NO CONTENT", headers)
            return [b""]
        if origin is None:
            return self.wsgi_app(environ, start_response)

        def start(status, headers, exc_info=None):
            vary = parse_set_header(", ".join(value for name, value in headers if name.lower() == "vary"))
            vary.add("Origin")  # case-insensitive: once, whatever the response already varied on
            headers = [h for h in headers if h[0].lower() not in ("vary", "access-control-allow-origin")]
            headers += [("Access-Control-Allow-Origin", origin),
                        ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
                        ("Vary", vary.to_header())]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)

    def _allowed(self, origin: str) -> bool:
        """Whether a client registered this origin; an unreachable database allows none."""
        try:
            with self.app.app_context():
                return origin in cors_origins()
        except DBAPIError:
            return False


def layer(app: Flask, wsgi_app):
    """The CORS layer (its place: identity/plumbing/wsgi.py)."""
    return Cors(app, wsgi_app)
