"""Deliver authorization responses by query, fragment, or form_post (an auto-submitting page)."""

from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import make_response, redirect, render_template

RESPONSE_MODES = ("query", "fragment", "form_post")


def _append(uri: str, params: list[tuple[str, str]], fragment: bool) -> str:
    parts = urlsplit(uri)
    encoded = urlencode(params)
    if fragment:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, encoded))
    query = f"{parts.query}&{encoded}" if parts.query else encoded
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def respond(redirect_uri: str, params: list[tuple[str, str]], response_mode: str):
    """Send params to the client's (already validated) redirect URI."""
    params = [(k, str(v)) for k, v in params if v is not None]
    if response_mode == "form_post":
        html = render_template("form_post.html", action=redirect_uri, params=dict(params))
        response = make_response(html)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; form-action " + _origin(redirect_uri)
            + "; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response
    return redirect(_append(redirect_uri, params, fragment=response_mode == "fragment"), code=302)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"
