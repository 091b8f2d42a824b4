"""Inputs no view should have to think about: raw bytes in the query string, and NUL characters.

A query string with raw non-ASCII bytes (`GET /connect/authorize?\xff`: curl and servers pass
them through) made every `request.args` a UnicodeDecodeError, since Werkzeug decodes the query
string as strict UTF-8. The WSGI layer here percent-encodes such bytes, as a browser would have
sent them; their values then decode as any percent-encoded value (invalid UTF-8 replaced).

A NUL character in any query or form value is refused before a view reads it.

PostgreSQL refuses NUL in text, so a NUL that reached a lookup (a user name, a client id, a
code) was a database error and a 5xx. The answer is a 400 in the path's own error shape (OAuth
JSON, problem+json, or a page). The token, revocation and introspection endpoints parse their
own form and check it there (identity/oauth2/parameters.py), so their bodies are not parsed twice.
"""

from flask import Flask, abort, request

OWN_PARSERS = frozenset(("/connect/token", "/connect/revocation", "/connect/introspect"))
FORM_TYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data"))
MESSAGE = "A parameter contains a NUL character."


def _has_nul(values) -> bool:
    return any("\x00" in name or (isinstance(value, str) and "\x00" in value) for name, value in values.items(multi=True))


def refuse_nul() -> None:
    if request.environ.get("QUERY_STRING") and _has_nul(request.args):
        abort(400, MESSAGE)
    if request.method == "POST" and request.path not in OWN_PARSERS and request.mimetype in FORM_TYPES:
        request.get_data(cache=True)  # keep the body: Authlib re-reads it at /connect/authorize (oauth2/requests.py)
        if _has_nul(request.form):
            abort(400, MESSAGE)


class AsciiQueryString:
    """WSGI layer: raw non-ASCII bytes in QUERY_STRING (latin-1 decoded in the environ) become %XX."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():
            environ["QUERY_STRING"] = "".join(c if c < "\x80" else f"%{ord(c) & 0xFF:02X}" for c in query)
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul)


def layer(app: Flask, wsgi_app):
    """The query-string layer (its place: identity/plumbing/wsgi.py)."""
    return AsciiQueryString(wsgi_app)
