"""The cookies in Chromium's own rules (tests/test_cookies_review.py has the rest): a cross-site
POST carries no SameSite=Lax cookie, and "Keep me signed in" beside a passkey sign-in."""

import pytest

from actions import pkce_pair, redirect_params
from .conftest import PageActions
from .test_passkeys import Authenticator, register_passkey

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

CLIENT_SITE = "http://localhost:8089"  # another site than the live server's 127.0.0.1
SPA_CALLBACK = "http://127.0.0.1:8080/callback"  # the demo spa client's redirect URI


def test_a_cross_site_posted_authorization_request_finds_the_person_signed_in(page, console, live_server, seeded):
    """OpenID Connect Core 3.1.2.1: the authorization endpoint takes POST, and a client's
    auto-submitting form on its own site is a cross-site POST, which carries no SameSite=Lax
    cookie. A signed-in person was answered as if signed out: asked for their password again
    (and `prompt=none` gave the client `login_required`)."""
    ui = PageActions(page, live_server.url, console)
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    assert ui.signed_in_as()
    _, challenge = pkce_pair()
    fields = {"client_id": "spa", "response_type": "code", "scope": "openid", "redirect_uri": SPA_CALLBACK,
              "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256"}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    form = (f'<!doctype html><title>app</title><form method="post" action="{ui.url("/connect/authorize")}">'
            f'{inputs}<button id="go">Go</button></form>')
    page.route(CLIENT_SITE + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    page.goto(CLIENT_SITE + "/")
    page.click("#go")
    page.wait_for_url(lambda url: "/account/login" in url or "/consent" in url)
    assert "/consent" in page.url, f"the signed-in person was asked to sign in again: {page.url}"
    with page.expect_request(lambda request: request.url.startswith(SPA_CALLBACK)) as back:
        page.get_by_role("button", name="Allow").click()
    answer = redirect_params(back.value.url)
    assert "code" in answer and answer.get("state") == "st-1", answer
    # and silently (prompt=none): the page that posts it again may send the browser on to the client
    silent = form.replace('name="state" value="st-1"', 'name="state" value="st-2"').replace(
        "<button", '<input type="hidden" name="prompt" value="none"><button')
    page.unroute(CLIENT_SITE + "/**")
    page.route(CLIENT_SITE + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body=silent))
    page.goto(CLIENT_SITE + "/")
    with page.expect_request(lambda request: request.url.startswith(SPA_CALLBACK)) as back:
        page.click("#go")
    answer = redirect_params(back.value.url)
    assert answer.get("state") == "st-2" and answer.get("error") != "login_required", answer


def test_keep_me_signed_in_is_kept_by_a_passkey_sign_in(page, console, live_server, seeded, context):
    """The login page's "Keep me signed in" sits above both ways to sign in; ticked, then "Sign
    in with a passkey" pressed, no remember-me cookie was set: the person found themselves signed
    out when the browser closed, with nothing to tell them the box was ignored."""
    local = PageActions(page, f"http://localhost:{live_server.port}", console)  # a passkey needs a domain
    user = seeded["users"][0]
    Authenticator(page)
    register_passkey(local, user["username"], user["password"])
    local.sign_out()
    local.goto("/account/login")
    page.get_by_label("Keep me signed in").check()
    posted = local.submit_and_catch_post("#passkey-signin button[type=submit]")
    assert posted.status == 302 and local.signed_in_as(), page.content()
    kept = [c for c in context.cookies() if c["name"] == "idsrv.remember"]
    assert kept and kept[0]["expires"] > 0, "a passkey sign-in with \"Keep me signed in\" ticked set no remember-me cookie"
