"""Every cookie the server sets, as a browser keeps and sends it (RFC 6265bis): attributes,
sizes and lifecycle. Each test names the defect it pins."""

import pytest

from actions import AuthActions, pkce_pair, redirect_params
from cookies_review_support import (CLIENT_SITE, SPA_CALLBACK, Authenticator, PageActions, browser,  # noqa: F401
                                    console, context, page, register_passkey)
from conftest import csrf_token
from mfa_actions import code_at, enrol_user, password_step, step_clock  # noqa: F401 (a fixture)

PREFIXED = {"SESSION_COOKIE_NAME": "__Host-idsrv.session", "REMEMBER_COOKIE_NAME": "__Host-idsrv.remember"}


def set_cookies(response, name: str) -> list[str]:
    """The Set-Cookie headers of a response for the cookie `name`."""
    return [v for v in response.headers.getlist("Set-Cookie") if v.startswith(name + "=")]


def attributes(header: str) -> set[str]:
    """A Set-Cookie header's attribute names, lower-cased (RFC 6265bis 5.6: case-insensitive)."""
    return {part.split("=", 1)[0].strip().lower() for part in header.split(";")[1:]}


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [PREFIXED])
def test_a_prefixed_remember_cookie_is_deleted_with_secure(client, seeded):
    """A __Host- (or __Secure-) remember-me cookie's deletion must carry Secure: a browser ignores
    a prefixed Set-Cookie without it (RFC 6265bis 4.1.3, 5.7; Chromium does), so "keep me signed
    in" stayed in the browser after sign-out, or after signing in again without it."""
    auth = AuthActions(client)
    signed_in = auth.login(remember=True)
    assert set_cookies(signed_in, "__Host-idsrv.remember"), "no remember-me cookie was set"
    for label, step in (("sign-out", auth.logout), ("sign-in without remember", auth.login)):
        deleted = set_cookies(step(), "__Host-idsrv.remember")
        assert deleted, f"{label}: the remember-me cookie was not deleted"
        assert "secure" in attributes(deleted[0]), f"{label}: deleted without Secure, which a browser ignores: {deleted[0]}"
        assert set_cookies(auth.login(remember=True), "__Host-idsrv.remember")


def session_cookie(client) -> str:
    cookie = client.get_cookie("idsrv.session", domain="localhost")
    assert cookie is not None, "no session cookie"
    return cookie.value


def test_a_copy_of_the_second_step_cookie_finishes_no_sign_in_after_sign_out(client, seeded, app, step_clock):
    """A person who stops at the second step and signs out has abandoned that sign-in: a copy of
    the cookie taken before (a shared computer) must not finish it with a code afterwards. The
    half-signed-in state lived on until MFA_PENDING_SECONDS."""

    secret, _ = enrol_user(app)
    first = password_step(client)
    assert "/account/login/mfa" in first.headers["Location"]
    step_page = client.get("/account/login/mfa")
    copy, step_token = session_cookie(client), csrf_token(step_page.get_data(as_text=True))
    page = client.get("/account/logout")
    signed_out = client.post("/account/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert signed_out.status_code == 200, signed_out.status_code
    client.set_cookie("idsrv.session", copy, domain="localhost", secure=True, httponly=True)
    replayed = client.post("/account/login/mfa", data={"csrf_token": step_token, "code": code_at(secret)})
    assert client.get("/account/password").status_code != 200, (
        f"the copied cookie finished the abandoned sign-in after sign-out ({replayed.status_code} to {replayed.headers.get('Location')})")


def test_signing_out_of_a_second_step_whose_user_was_removed_meanwhile(client, seeded, app, step_clock):
    """The sign-out that gives up a second step spends its id for the user it names: a user removed
    meanwhile has no row to name, and the sign-out must still answer."""
    from identity.services import accounts

    enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    with app.app_context():
        accounts.remove_user("alice")
    page = client.get("/account/logout")
    signed_out = client.post("/account/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert signed_out.status_code == 200, signed_out.status_code


@pytest.mark.database_independent
def test_a_form_posted_by_a_browser_that_kept_no_cookie_says_cookies_are_needed(client, seeded):
    """A browser that keeps no cookie of this site (cookies blocked, or Secure cookies on a page
    served over plain http: Chromium drops them without a word) posts the sign-in form without
    the session cookie. It was told "The form expired ... Open it again", which never helps:
    the page must say that the browser sent no cookie."""
    page = client.get("/account/login")
    token = csrf_token(page.get_data(as_text=True))
    client.delete_cookie("idsrv.session", domain="localhost")  # what the browser did not keep
    refused = client.post("/account/login", data={"csrf_token": token, "username": "alice", "password": "x"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400, refused.status_code
    assert "cookie" in html.lower(), "a browser that kept no cookie is told the form expired, which reopening never fixes"
    forged = client.post("/account/login", data={"csrf_token": token, "username": "alice", "password": "x"},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 400 and "cookie" not in forged.get_data(as_text=True).lower(), \
        "a form posted from another site (which never carries the Lax cookie) is not a browser without cookies"


@pytest.mark.browser
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


def test_a_remember_me_cookie_of_an_ended_session_is_deleted(client, seeded, app):
    """"Keep me signed in" on a computer whose session the person ended from another device (the
    devices page, the local API, the operator): the cookie signs nobody in, yet it stayed in the
    browser for its 14 days, read and looked up again with every request. The first request that
    finds it naming no live session deletes it."""
    from identity.models import User
    from identity.services import devices
    from identity.extensions import db
    from sqlalchemy import select

    auth = AuthActions(client)
    assert set_cookies(auth.login(remember=True), "idsrv.remember")
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        assert devices.end_everything(user_id, by="operator")
    home = client.get("/")
    assert home.status_code == 200 and "Sign out" not in home.get_data(as_text=True)
    deleted = set_cookies(home, "idsrv.remember")
    assert deleted and "max-age=0" in deleted[0].lower(), \
        f"the remember-me cookie of an ended session stays in the browser: {home.headers.getlist('Set-Cookie')}"
    assert client.get_cookie("idsrv.remember", domain="localhost") is None


@pytest.mark.browser
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
