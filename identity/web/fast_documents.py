"""Serve the cached discovery document and JWKS straight from WSGI, without entering Flask.

They are the most requested public documents and identical for every caller, so once a worker
has built them (through the Flask views, which fill the caches) this layer answers with the
same body and ETag (the headers layer around the app adds the security headers, the request
id and the log line, as for every response). Anything it is unsure of (a stale or missing cache, a
CORS request, a query string) goes to Flask as usual.
"""

from flask import Flask
from werkzeug.http import parse_etags

from ..services.keys import cached_jwks
from .discovery import cache_control, cached_document

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = DISCOVERY_PATH + "/jwks"


class FastDocuments:
    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        cfg = app.config
        self.issuer = (cfg.get("ISSUER") or "").rstrip("/") or None
        max_age = cfg["DISCOVERY_CACHE_SECONDS"]
        # Vary: Origin, as the Flask views send it: a shared cache must not answer a CORS request
        # with this copy, which has no Access-Control-Allow-Origin
        self.jwks_headers = [("Content-Type", "application/json"), ("Cache-Control", cache_control(False, max_age)),
                             ("Vary", "Origin")]
        # without ISSUER the document names the request's Host: never for a shared cache
        self.discovery_headers = [("Content-Type", "application/json"),
                                  ("Cache-Control", cache_control(self.issuer is None, max_age)), ("Vary", "Origin")]

    def _cached(self, environ) -> tuple[bytes, str] | None:
        """The document and its ETag from its owner's cache (services/keys.py, discovery.py), or None."""
        if environ["PATH_INFO"] == JWKS_PATH:
            return cached_jwks(self.app)
        base = self.issuer
        if base is None:  # ProxyFix (outside this layer) has already applied trusted X-Forwarded-*
            base = f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST', '')}"
        return cached_document(self.app, base)

    def __call__(self, environ, start_response):
        if (environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") in (DISCOVERY_PATH, JWKS_PATH)
                and "HTTP_ORIGIN" not in environ and not environ.get("QUERY_STRING")):
            cached = self._cached(environ)
            if cached is not None:
                return self._respond(environ, start_response, *cached)
        return self.wsgi_app(environ, start_response)

    def _respond(self, environ, start_response, body: bytes, etag: str):
        quoted = f'"{etag}"'
        static = self.jwks_headers if environ["PATH_INFO"] == JWKS_PATH else self.discovery_headers
        headers = static + [("ETag", quoted)]
        if "HTTP_IF_NONE_MATCH" in environ and parse_etags(environ["HTTP_IF_NONE_MATCH"]).contains_weak(etag):
            start_response("304 Not Modified", [h for h in headers if h[0] != "Content-Type"])
            return [b""]
        start_response("200 OK", headers + [("Content-Length", str(len(body)))])
        return [body]


def layer(app: Flask, wsgi_app):
    """The fast-documents layer (its place: identity/plumbing/wsgi.py)."""
    return FastDocuments(app, wsgi_app)
