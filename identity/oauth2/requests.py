"""Authlib's OAuth2Request for form POSTs (the token, revocation and introspection endpoints),
parsed once with the standard library.

Authlib's Flask request reads every parameter through `request.values`, which makes werkzeug
build its general form parser (multipart-capable, stream-limited) and a combined view of the
query and the body, and computes the full request URL only to check the scheme. For an
`application/x-www-form-urlencoded` body this parses the body once (`get_data` keeps it, so
`request.form` still works), and gives Authlib the scheme, host and path it checks. Other
requests keep Authlib's own wrapper, except authorization requests: ParamsRequest gives Authlib
the parameters the authorization endpoint checks, which a sign-in may take from a pending request.
"""

from collections import defaultdict
from functools import cached_property
from urllib.parse import parse_qsl, quote

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from werkzeug.datastructures import CombinedMultiDict, MultiDict

FORM_TYPE = "application/x-www-form-urlencoded"


def is_form_post(environ) -> bool:
    if environ.get("REQUEST_METHOD") != "POST":
        return False
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() == FORM_TYPE


def has_other_body(environ) -> bool:
    """Whether the request has a body, or names a media type, that is not form-urlencoded (RFC 6749
    sections 3.2, 4.1.3: the token endpoint's parameters are; RFC 7009, RFC 7662 likewise).
    Werkzeug would parse a multipart body, where `password=` is an empty password, not an omitted
    one (section 3.1), and a JSON body's parameters would be silently missing. A bodiless POST
    (its parameters in the query) has no media type to refuse."""
    if is_form_post(environ):
        return False
    return (bool(environ.get("CONTENT_TYPE", "").strip()) or environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ)


class FormPayload(OAuth2Payload):
    def __init__(self, data):
        self._data = data

    @property
    def data(self):
        return self._data

    @cached_property
    def datalist(self):
        values = defaultdict(list)
        for key in self._data:
            values[key].extend(self._data.getlist(key))
        return values


class FormRequest(OAuth2Request):
    def __init__(self, request):
        environ = request.environ
        super().__init__(method="POST", uri=_uri(environ))
        self.headers = request.headers  # set after: Authlib's `headers or {}` would count them all
        self._request = request
        body = request.get_data(cache=True).decode("utf-8", "replace")
        # a parameter sent without a value is as if omitted (RFC 6749 section 3.1): `password=` is
        # a missing password (invalid_request), not a wrong one (invalid_grant, a failed sign-in);
        # in the query too, where an empty one beside the body's was counted as sent twice
        self._form = MultiDict(parse_qsl(body))
        query = environ.get("QUERY_STRING")
        self._args = MultiDict(parse_qsl(query)) if query else request.args
        self.payload = FormPayload(CombinedMultiDict([self._args, self._form]) if query else self._form)

    @property
    def args(self):
        return self._args

    @property
    def form(self):
        return self._form


class ParamsRequest(OAuth2Request):
    """An authorization request made of the given parameters (MultiDicts: the query, the form and
    the values Authlib reads), served on the current HTTP request: the endpoint's own, or a
    sign-in resuming a pending request."""

    def __init__(self, request, method, args, form, values):
        super().__init__(method=method, uri=_uri(request.environ))
        self.headers = request.headers
        self._args, self._form = args, form
        self.payload = FormPayload(values)

    @property
    def args(self):
        return self._args

    @property
    def form(self):
        return self._form


def _uri(environ) -> str:
    """Scheme, host and path: what Authlib's transport check reads (the query is left out)."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    path = quote((environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace"))
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}"
