"""The WSGI layers around the Flask app, in one place, outermost first.

Each layer sees every request before Flask does (and every response after), without Flask's
per-request hooks. Their order matters, so it is written down here once, with the reason for
each place; the layers themselves live with the part they serve. A layer's `layer(app,
wsgi_app)` returns the wrapped app, or `wsgi_app` itself when its setting turns it off.
"""

from flask import Flask

from . import body_limit, headers, issuer_path, whole_body
from ..config import startup
from ..services import logout_delivery, purge
from ..web import cors, fast_documents, inputs, metrics

#: (layer, why it sits there), outermost first
LAYERS = (
    (startup.proxy_fix,
     "ProxyFix: first, so every layer inside sees the client's address, scheme and host"),
    (issuer_path.layer,
     "an issuer's path taken off the request's: before every layer that reads the path"),
    (purge.layer,
     "purge after responses: outside the headers layer, so a pass is not part of a request's logged time"),
    (logout_delivery.layer,
     "wake the logout deliverer after responses: outside the headers layer, like the purge (its thread does the work)"),
    (whole_body.layer,
     "the body joined into one bytes object: inside the after-response layers (their work stays after the "
     "server's write), outside everything that makes a body"),
    (headers.layer,
     "request id, security headers, request log: around every response, a refused or fast one too"),
    (metrics.layer,
     "GET /metrics to allowed addresses, and each request's latency: inside the headers layer, before any limit"),
    (body_limit.layer,
     "chunked body limit: before anything reads the body, inside the headers layer so a 413 gets its headers"),
    (inputs.host_layer,
     "a Host that names no host is a 400: before Flask binds its routes to it, inside the headers layer"),
    (inputs.layer,
     "raw query-string bytes percent-encoded: before the layers and views that read the query string"),
    (fast_documents.layer,
     "discovery and JWKS from cache: after the inputs are clean, before CORS (it leaves CORS requests to Flask)"),
    (cors.layer,
     "CORS preflights and allow headers: innermost, around the Flask views that browsers call"),
)


def wrap(app: Flask) -> None:
    """Put the layers around `app.wsgi_app` (once, after the app's views and settings are in place)."""
    for layer, _why in reversed(LAYERS):
        app.wsgi_app = layer(app, app.wsgi_app)
