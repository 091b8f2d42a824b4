"""Review: the local API's password and address changes, and its "send the link again", answered
500 when the operator removed the token's user (`flask users remove`) between the request's bearer
check and its first write. The test commits the removal at a chosen point (a hook on the change's
first write, the lockout's reservation, or on the service the view calls), on the real database, and asserts
on the answer and on what is stored."""

import pytest

from identity.services import lockout, verification
from test_leftovers_review import alice_gone
from test_localapi_support import (  # noqa: F401  (fixtures)
    ALICE_PASSWORD,
    CHEAP_ARGON2,
    api,
    app_config,
    bearer,
)
from test_small_review import alice_removed_before_the_first_call, audited


@pytest.mark.parametrize("change", ["password", "email", "verification"])
def test_a_local_api_change_whose_user_is_removed_meanwhile_is_answered_as_her_token_would_be(app, api, monkeypatch,
                                                                                              change):
    """The app sent alice's password (or address) change, or asked for her verification link
    again, with her bearer token as the operator ran `flask users remove alice`: the token was
    checked before the removal committed, the request's first write after it. The app was answered 500 ("never a 500"); the token's user is
    gone, so it is answered as her token is from then on: 401 `invalid_token`, with nothing
    recorded against her."""
    token = api.token()
    if change == "verification":
        removed = alice_removed_before_the_first_call(monkeypatch, app, verification, "send_verification")
        answer = api.client.post("/localapi/email/verification", headers=bearer(token))
    else:
        removed = alice_removed_before_the_first_call(monkeypatch, app, lockout, "reserve")
    if change == "password":
        answer = api.change_password(token)
    elif change == "email":
        answer = api.client.put("/localapi/email", headers=bearer(token),
                                json={"email": "alice@example.org", "current_password": ALICE_PASSWORD})
    assert removed.get("done", "not run") is None, removed
    challenge = answer.headers.get("WWW-Authenticate", "")
    assert (answer.status_code, challenge.startswith('Bearer error="invalid_token"')) == (401, True), \
        answer.get_data(as_text=True)[:300]
    assert alice_gone(app) and api.get_account(token).status_code == 401
    with app.app_context():
        assert audited("password_change_failed", "email_change_failed", "password_changed", "mfa_failed",
                       "email_verification_sent") == []
