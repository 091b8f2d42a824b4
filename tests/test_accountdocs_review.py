"""docs/passwords.md, docs/sessions.md, docs/local-api.md and docs/mfa.md read as a contract: each
test holds the code to one sentence of them that it did not keep (the page and the local API alike)."""

import pytest
from sqlalchemy import select

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent
from mfa_actions import enrol_user, password_step, step_clock  # noqa: F401  (fixture)
from test_localapi_support import CHEAP_ARGON2


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


# --- docs/mfa.md, Operators: "users mfa-reset removes a user's authenticator app, recovery codes and
# passkeys (a lost phone); they sign in with the password alone until they set up a new one."


def test_a_second_step_whose_factors_were_removed_meanwhile_sends_back_to_the_password(app, seeded, client, step_clock):
    """The person typed the password, is on the code page without a code (the phone is lost), and
    the operator runs `users mfa-reset`: the page must not tell them their factor is a passkey
    (they have none), with no way on but "Start again"; it sends them to the password, saying why."""
    enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    page = client.get("/account/login/mfa")

    assert page.status_code == 302, "the second step of a user with no second factor left is still shown"
    assert page.headers["Location"].startswith("/account/login")
    login_page = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "no second factor" in login_page and "second factor is a passkey" not in login_page
    signed_in = AuthActions(client).login()
    assert signed_in.status_code == 302 and "/account/login" not in signed_in.headers["Location"]
    assert client.get("/account/sessions").status_code == 200


def test_a_code_posted_after_the_factors_were_removed_is_sent_back_to_the_password(app, seeded, client, step_clock):
    """The same, with the code page open from before the reset and a (recovery) code posted."""
    _, codes = enrol_user(app)
    password_step(client)
    page = client.get("/account/login/mfa").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    posted = client.post("/account/login/mfa", data={"csrf_token": csrf_token(page), "code": codes[0]})

    assert posted.status_code == 302, "a code posted after the factors were removed is answered with the passkey step"
    assert "no second factor" in client.get(posted.headers["Location"]).get_data(as_text=True)
    with app.app_context():  # no code was checked, so none was counted toward the lockout
        assert not db.session.scalars(select(AuditEvent).where(AuditEvent.event == "mfa_failed")).all()


def test_a_passkey_posted_after_the_factors_were_removed_is_sent_back_to_the_password(app, seeded, client, step_clock):
    """The same from the second step's "Use a passkey" (a user with an app and a passkey, both
    removed by the reset): the passkey's answer was refused, counted toward the lockout as a wrong
    one, and the page shown again saying the factor is a passkey."""
    from identity.models import User

    enrol_user(app)
    password_step(client)
    page = client.get("/account/login/mfa").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    posted = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf_token(page), "credential": "{}"})

    assert posted.status_code == 302, "a passkey posted after the factors were removed is refused and counted"
    assert "no second factor" in client.get(posted.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 0

