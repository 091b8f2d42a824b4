"""A native app's whole life (RFC 8252): registration of each redirect URI kind, the sign-in
through the system browser (code + PKCE), the months of refreshes after it, and its sign-out."""

import pytest

from actions import AuthActions, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from native_review_support import apply, authorize_query, directive, invalid_sources


@pytest.fixture
def native(seeded, app):
    apply(app)


@pytest.mark.parametrize("redirect_uri", ["http://[::1]:51234/cb", "http://127.0.0.1:51234/cb"])
def test_the_sign_in_form_may_end_at_a_loopback_redirect_of_either_address(client, native, redirect_uri):
    """RFC 8252 section 7.3 names http://[::1]:{port} beside 127.0.0.1. The sign-in page listed
    `http://[::1]:51234` in form-action, a source CSP cannot express (its host-source has no
    IP-v6 literal): Chromium ignores it, and the redirect after the sign-in post was blocked, so
    the app never got its code. The form_post page had the same source as its only target."""
    url, _ = authorize_query(redirect_uri)
    login = client.get(url)
    assert login.status_code == 302 and "/account/login" in login.headers["Location"]
    page = client.get(login.headers["Location"])
    sources = directive(page.headers["Content-Security-Policy"], "form-action")
    assert not invalid_sources(sources), f"form-action has sources a browser ignores: {invalid_sources(sources)}"
    assert len(sources) > 1, sources
    posted = client.post(login.headers["Location"], data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "username": "alice", "password": ALICE_PASSWORD})
    assert posted.status_code == 303 and posted.headers["Location"].startswith(redirect_uri + "?code=")

    form_post_url, _ = authorize_query(redirect_uri, response_mode="form_post")
    form_post = client.get(form_post_url)
    assert form_post.status_code == 200
    sources = directive(form_post.headers["Content-Security-Policy"], "form-action")
    assert sources and not invalid_sources(sources) and sources != ["'none'"], sources
