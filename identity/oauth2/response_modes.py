"""Where and how to answer an authorization request, worked out in one place.

`reply_to` is the only judge of a requested redirect URI outside Authlib's own validation (which
asks the same `redirect_uri_matches`), and `response_mode` the only reading of response_mode:
the authorization endpoint, the consent page, error responses and the sign-in page (which lets
its form reach the client) all ask here. The web layer delivers the answer (`location`, or an
auto-submitting page for form_post).
"""

from urllib.parse import unquote_plus, urlencode, urlsplit

from .client import redirect_uri_matches
from .decisions import ReplyTo

RESPONSE_MODES = ("query", "fragment", "form_post")


def response_type(values) -> str:
    """The response type as Authlib compares it: several types sorted, so "id_token code" is "code id_token"."""
    raw = values.get("response_type") or ""
    return " ".join(sorted(raw.split())) if " " in raw else raw


def response_mode(values, redirect_uri: str | None = None) -> str:
    """The requested mode when known, else the response type's default; never query for tokens,
    and never form_post to a redirect URI no browser can post a form to (grant_types.py refuses
    that request, and its error, as any answer to that URI, is redirected).

    The default is the fragment for a response type that carries a token or an ID token, else
    the query: the code flow's, and that of an error about a response type that is missing or
    unknown (RFC 6749 4.1.2.1)."""
    carries_tokens = bool({"token", "id_token"} & set(response_type(values).split()))
    default = "fragment" if carries_tokens else "query"
    requested = values.get("response_mode")
    mode = requested if requested in RESPONSE_MODES else default
    if mode == "query" and carries_tokens:
        return "fragment"
    if mode == "form_post" and redirect_uri is not None and not takes_form_post(redirect_uri):
        return default
    return mode


def takes_form_post(redirect_uri: str) -> bool:
    """Whether a browser can post a form to this redirect URI: http or https, not a private-use scheme."""
    return urlsplit(redirect_uri).scheme.lower() in ("http", "https")


def reply_to(client, values) -> ReplyTo | None:
    """Where to answer the request in `values` for `client` (a Client row), or None when its
    redirect_uri is missing or not registered: then nothing is ever sent to it."""
    uri = values.get("redirect_uri")
    if client is None or not uri or not redirect_uri_matches(client.redirect_uris, uri):
        return None
    return ReplyTo(uri, response_mode(values, uri))


def location(redirect_uri: str, params: list[tuple[str, str]], fragment: bool) -> str:
    """The redirect URI with `params` added to its query (or as its fragment); unchanged without params.
    In the query, a pair of the URI's own that `params` names again is left out (_kept_pairs).

    The URI is kept as written, not rebuilt from urlsplit's parts: urlunsplit drops an empty
    authority, and sent a native app's `myapp://` or `com.example.app:///cb` (RFC 8252 section
    7.1) its answer at `myapp:?code=...` or `com.example.app:/cb?code=...`, URIs it never registered."""
    if not params:
        return redirect_uri
    uri = redirect_uri.partition("#")[0]  # (a registered redirect URI has no fragment)
    encoded = urlencode(params)
    if fragment:
        return f"{uri}#{encoded}"
    base, _, query = uri.partition("?")
    return base + "?" + "&".join([*_kept_pairs(query, {name for name, _ in params}), encoded])


def _kept_pairs(query: str, answered: set[str]) -> list[str]:
    """The registered URI's own query pairs (RFC 6749 section 3.1.2: retained), as written, but
    those the answer names itself: a parameter is sent once (section 3.1), with the answer's value
    (a registered `?state=x` would else come first, before the client's own state)."""
    return [pair for pair in query.split("&") if pair and unquote_plus(pair.partition("=")[0]) not in answered]


def delivered(params) -> list[tuple[str, str]]:
    """The pairs as sent: values as text, absent ones left out."""
    return [(k, str(v)) for k, v in params if v is not None]
