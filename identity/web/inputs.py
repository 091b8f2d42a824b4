"""Inputs no view should have to think about: a Host header that names no host, raw bytes in the
query string, and NUL characters.

Werkzeug binds the app's routes to the host's IDNA form, and request.host_url decodes a Punycode
label. A Host with a label over 63 characters or an empty one (`.`, `a..b`) left the request with
no URL adapter, and its 400 page then failed in url_for, past every layer: the server's bare 500
and a traceback in the log. A label that is not Punycode (`xn--zz`) failed wherever the issuer was
the request's host. The WSGI layer here answers such a request 400 before Flask routes it.

A query string with raw non-ASCII bytes (`GET /connect/authorize?\xff`: curl and servers pass
them through) made every `request.args` a UnicodeDecodeError, since Werkzeug decodes the query
string as strict UTF-8. The WSGI layer here percent-encodes such bytes, as a browser would have
sent them; their values then decode as any percent-encoded value (invalid UTF-8 replaced).

A NUL character in any query or form value is refused before a view reads it, and so is a
multipart part that names no field (Werkzeug files it under the key None: `"\x00" in None` was a
TypeError and a 500 at every endpoint that reads a form), or a file: no form here takes one.

PostgreSQL refuses NUL in text, so a NUL that reached a lookup (a user name, a client id, a
code) was a database error and a 5xx. The answer is a 400 in the path's own error shape (OAuth
JSON, problem+json, or a page). The token, revocation and introspection endpoints parse their
own form and check it there (identity/oauth2/parameters.py), so their bodies are not parsed twice.
"""

from flask import Flask, abort
from werkzeug.urls import uri_to_iri
from werkzeug.wsgi import get_host

from ..current import current_request
from .errors import render_error

OWN_PARSERS = frozenset(("/connect/token", "/connect/revocation", "/connect/introspect"))
# answers a NUL itself, before any lookup: to the client when its redirect URI is known (RFC 6749
# 4.1.2.1, oauth2/authorize.py), else on its error page
OWN_NUL_CHECK = "/connect/authorize"
FORM_TYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data"))
MESSAGE = "A parameter contains a NUL character."
NAMELESS = "A form field has no name."
NO_FILES = "No form here takes a file."
HOST_MESSAGE = "The Host header names no host."


def _has_nul(values) -> bool:
    return any("\x00" in name or (isinstance(value, str) and "\x00" in value) for name, value in values.items(multi=True))


def refuse_nul() -> None:
    request = current_request()
    checks_nul = request.path != OWN_NUL_CHECK
    if checks_nul and request.environ.get("QUERY_STRING") and _has_nul(request.args):
        abort(400, MESSAGE)
    # any method's form body: the authorization endpoint and the consent page read a GET's form too
    if request.path not in OWN_PARSERS and request.mimetype in FORM_TYPES:
        request.get_data(cache=True)  # keep the body: Authlib re-reads it at /connect/authorize (oauth2/requests.py)
        # a multipart part whose Content-Disposition names no field (none, or an unterminated
        # quote) is filed under the key None, which no check or view of a name can read
        if None in request.form or None in request.files:
            abort(400, NAMELESS)
        # no form takes a file, and Flask-WTF hands the forms the files with the fields: a file part
        # named as a text field met a Length validator as a FileStorage, len() a TypeError
        if request.files:
            abort(400, NO_FILES)
        if checks_nul and _has_nul(request.form):
            abort(400, MESSAGE)


def names_a_host(host: str) -> bool:
    """Whether Werkzeug can bind the routes to `host` (its IDNA form) and build URLs on it."""
    try:
        host.partition(":")[0].encode("idna")  # werkzeug.routing.Map.bind
        uri_to_iri(f"http://{host}/")  # request.host_url
    except (UnicodeError, ValueError):
        return False
    return True


class KnownHost:
    """WSGI layer: a request whose Host (or trusted X-Forwarded-Host) names no host is a 400, in
    its path's own error shape (web/errors.py), rendered on a stand-in host that Werkzeug binds."""

    STAND_IN = "invalid"  # RFC 2606's reserved name: no link of the error page leaves the page
    REMEMBERED = 64  # hosts found good, kept per worker: the check costs several µs, a set lookup nothing

    def __init__(self, app: Flask, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app
        self.good: set[str] = set()

    def __call__(self, environ, start_response):
        host = get_host(environ)
        if host in self.good:
            return self.wsgi_app(environ, start_response)
        if names_a_host(host):
            if len(self.good) < self.REMEMBERED:  # bounded: any client chooses its Host
                self.good.add(host)
            return self.wsgi_app(environ, start_response)
        with self.app.request_context({**environ, "HTTP_HOST": self.STAND_IN}):
            response = render_error(400, "Bad Request", HOST_MESSAGE)
        return response(environ, start_response)


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
    # first of the app's before-request functions: CSRFProtect's (attached earlier) reads the name
    # of every form field, and a nameless one was an AttributeError there
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_nul)


def host_layer(app: Flask, wsgi_app):
    """The Host layer (its place: identity/plumbing/wsgi.py)."""
    return KnownHost(app, wsgi_app)


def layer(app: Flask, wsgi_app):
    """The query-string layer (its place: identity/plumbing/wsgi.py)."""
    return AsciiQueryString(wsgi_app)
