"""Every cookie the server sets, as a browser keeps and sends it (RFC 6265bis): attributes,
sizes and lifecycle. Each test names the defect it pins."""

import pytest

from actions import AuthActions
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
