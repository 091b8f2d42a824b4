"""Review: the account pages that change the password or the address, or send the verification
link again, answered 500 when the operator removed the signed-in user (`flask users remove`)
after the request's session was loaded and before the service's first read or write. Each test
commits the removal at a chosen point (a hook on the lockout's reservation, or on the service the
page calls), on the real database, and asserts on the answer and on what is stored."""

import re

import pytest

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.services import lockout, verification
from test_leftovers_review import alice_gone
from test_small_review import alice_removed_before_the_first_call, audited

NEW_PASSWORD = "cobalt-meadow-lantern-8135"


def _prefixed_token(html: str, prefix: str) -> str:
    return [token for found, token in re.findall(r'name="([a-z]+-)?csrf_token"[^>]*value="([^"]+)"', html)
            if found == prefix][0]


def _post(client, door: str):
    if door == "password":
        html = client.get("/account/password").get_data(as_text=True)
        return client.post("/account/password", data={"csrf_token": csrf_token(html), "current_password": ALICE_PASSWORD,
                                                       "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    if door == "address":
        html = client.get("/account/email").get_data(as_text=True)
        return client.post("/account/email", data={"change-csrf_token": _prefixed_token(html, "change-"),
                                                   "change-email": "alice.new@example.org",
                                                   "change-current_password": ALICE_PASSWORD})
    if door == "link again":
        html = client.get("/account/email").get_data(as_text=True)
        return client.post("/account/email", data={"send-csrf_token": _prefixed_token(html, "send-")})
    html = client.get("/account/email/required").get_data(as_text=True)
    return client.post("/account/email/required", data={"csrf_token": csrf_token(html)})


@pytest.mark.parametrize("door", ["password", "address", "link again", "link asked for by an app"])
def test_a_page_whose_user_is_removed_meanwhile_signs_the_browser_out(app, client, seeded, monkeypatch, door):
    """alice sent the password page (or the address page's change, or asked for her verification
    link again) as the operator ran `flask users remove alice`: her browser session was loaded
    before the removal committed, the change's first read or write after it. The page answered
    500 ("Something went wrong on our side"); it answers as her next request would: signed out,
    sent to the sign-in page, with nothing recorded against her."""
    assert AuthActions(client).login().status_code == 302
    owner, name = (lockout, "reserve") if door in ("password", "address") else (verification, "send_verification")
    removed = alice_removed_before_the_first_call(monkeypatch, app, owner, name)
    answer = _post(client, door)
    assert removed.get("done", "not run") is None, removed
    assert (answer.status_code, "/account/login" in answer.headers.get("Location", "")) == (302, True), \
        answer.get_data(as_text=True)[:300]
    assert alice_gone(app) and client.get("/account/email").status_code == 302
    with app.app_context():
        assert audited("password_change_failed", "email_change_failed", "password_changed", "mfa_failed",
                       "email_verification_sent", "email_change_requested") == []
