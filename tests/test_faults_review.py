"""The fault injector's review: one write of an operation fails in the database (a trigger that
refuses it, tests/faults_review_support.py), and the operation must answer clearly, leave nothing
of itself behind, spend nothing the person must have to try again, and succeed when tried again."""

import re

import pytest
from sqlalchemy import func, select

from actions import AuthActions
from conftest import ALICE_PASSWORD
from faults_review_support import LEAKS_RE, refused, snapshot
from identity.extensions import db
from identity.models import RecoveryCode, TotpFactor
from mfa_actions import CLOCK, code_at, enrol, post_mfa, step_clock  # noqa: F401  (fixture)


@pytest.fixture
def enrolled(app, client, seeded, step_clock):
    """alice, signed in with her password alone in `client`, with an authenticator app; returns
    (secret, recovery codes)."""
    assert AuthActions(client).login().status_code == 302
    secret, codes = enrol(client)
    CLOCK.next_step()  # the enrolment used this step's code
    return secret, codes


def unused_recovery_codes(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None)))
        db.session.remove()
    return count


def assert_clear_503(response):
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body
    assert not re.search(LEAKS_RE, body), body


# --- second factors: the code that proves one is spent with the change it allows ---------------------


@pytest.mark.parametrize("table, op", [("recovery_codes", "INSERT"), ("audit_events", "INSERT")])
def test_new_recovery_codes_that_fail_to_be_stored_spend_no_recovery_code(app, client, enrolled, table, op):
    _, codes = enrolled
    with refused(app, table, op):
        assert_clear_503(post_mfa(client, "regenerate", otp=codes[0]))
    assert unused_recovery_codes(app) == 10
    again = post_mfa(client, "regenerate", otp=codes[0])
    assert again.status_code == 200, again.get_data(as_text=True)
    assert unused_recovery_codes(app) == 10  # the new set


@pytest.mark.parametrize("table, op", [("totp_factors", "DELETE"), ("recovery_codes", "DELETE"),
                                       ("audit_events", "INSERT")])
def test_a_removal_of_the_app_that_fails_spends_no_recovery_code(app, client, enrolled, table, op):
    _, codes = enrolled
    before = snapshot(app)
    with refused(app, table, op):
        assert_clear_503(post_mfa(client, "remove", password=ALICE_PASSWORD, code=codes[3]))
    after = snapshot(app)
    assert after["recovery_codes"] == before["recovery_codes"]
    assert after["totp_factors"] == before["totp_factors"]
    removed = post_mfa(client, "remove", password=ALICE_PASSWORD, code=codes[3])
    assert removed.status_code == 200, removed.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TotpFactor)) == 0


def test_a_removal_of_the_app_that_fails_leaves_its_code_usable_at_once(app, client, enrolled):
    secret, _ = enrolled
    before = snapshot(app)
    with refused(app, "totp_factors", "DELETE"):
        assert_clear_503(post_mfa(client, "remove", password=ALICE_PASSWORD, code=code_at(secret)))
    assert snapshot(app)["totp_factors"] == before["totp_factors"]  # the step is not spent
    removed = post_mfa(client, "remove", password=ALICE_PASSWORD, code=code_at(secret))
    assert removed.status_code == 200, removed.get_data(as_text=True)


def test_a_second_step_whose_session_fails_to_be_stored_spends_no_recovery_code(app, enrolled):
    from conftest import csrf_token
    from mfa_actions import password_step

    _, codes = enrolled
    browser = app.test_client()
    assert password_step(browser).status_code == 302
    page = browser.get("/account/login/mfa")
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "code": codes[5]}
    with refused(app, "audit_events", "INSERT"):
        assert_clear_503(browser.post("/account/login/mfa", data=form))
    assert unused_recovery_codes(app) == 10
    signed_in = browser.post("/account/login/mfa", data=form)
    assert signed_in.status_code == 302 and "/account/login" not in signed_in.headers["Location"]
    assert unused_recovery_codes(app) == 9


# --- the operator's commands: a write the database refuses is one line, without the row's values ----------


def test_a_command_whose_write_the_database_refuses_is_one_line_without_the_values(app, seeded, runner):
    before = snapshot(app)
    with refused(app, "users", "INSERT"):
        result = runner.invoke(args=["users", "add", "carol", "--email", "carol@example.com"],
                               input="juniper-falcon-ribbon-735\n")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # click's error, not a traceback
    assert result.output.startswith("Error: database error: ") and len(result.output.splitlines()) == 1, result.output
    assert "argon2" not in result.output and "carol@example.com" not in result.output
    assert snapshot(app) == before
    again = runner.invoke(args=["users", "add", "carol", "--email", "carol@example.com"],
                          input="juniper-falcon-ribbon-735\n")
    assert again.exit_code == 0, again.output


# --- a row the database refuses is no name or address taken ------------------------------------------------


@pytest.mark.parametrize("app_config", [{"REGISTRATION_ENABLED": True}])
def test_a_registration_whose_user_the_database_refuses_is_no_check_your_email_page(app, client, seeded, mail):
    from test_registration import register

    before = snapshot(app)
    with refused(app, "users", "INSERT", errcode="23514"):
        assert_clear_503(register(client))
    after = snapshot(app)
    assert {name: rows for name, rows in after.items() if name != "audit_events"} == \
        {name: rows for name, rows in before.items() if name != "audit_events"}
    done = register(client)
    assert done.status_code == 200, done.get_data(as_text=True)
    mail.wait_for(to="carol@example.com")


def test_a_passkey_the_database_refuses_to_store_is_no_passkey_already_registered(app, client, seeded):
    from identity.models import Passkey
    from test_passkeys_web import register_over_http
    from webauthn_keys import SoftKey

    assert AuthActions(client).login().status_code == 302
    key = SoftKey()
    with refused(app, "passkeys", "INSERT", errcode="23514"):
        response = register_over_http(client, key)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert "already registered" not in response.get_data(as_text=True)
    registered = register_over_http(client, key)
    assert registered.status_code in (200, 201), registered.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Passkey)) == 1


def test_keys_rotate_whose_keys_the_database_refuses_says_so_in_one_line(app, seeded, runner):
    runner.invoke(args=["keys", "list"])  # the first keys
    before = snapshot(app)
    with refused(app, "signing_keys", "INSERT", errcode="23514"):
        result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.startswith("Error: database error: ") and len(result.output.splitlines()) == 1, result.output
    assert "rotated elsewhere" not in result.output
    assert snapshot(app) == before
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0


def test_a_first_signing_key_the_database_refuses_is_temporarily_unavailable_not_a_500(app, flow_clients, client):
    from actions import OAuthActions

    def password_grant():
        return OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                          scope="openid")

    with refused(app, "signing_keys", "INSERT", errcode="23514"):
        response = password_grant()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert password_grant().status_code == 200


# --- a right password whose request the database refuses is no failed attempt -------------------------------


def failed_attempts(app, username="alice") -> int:
    from identity.models import User

    with app.app_context():
        count = db.session.scalar(select(User.failed_attempts).where(User.username == username))
        db.session.remove()
    return count


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 2}])
def test_sign_ins_whose_session_the_database_refuses_lock_nobody_out(app, client, seeded):
    for _ in range(2):
        with refused(app, "user_sessions", "INSERT"):
            assert_clear_503(AuthActions(app.test_client()).login())
        assert failed_attempts(app) == 0
    assert AuthActions(client).login().status_code == 302


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 2}])
def test_password_changes_the_database_refuses_lock_nobody_out(app, client, seeded):
    from conftest import csrf_token

    new = "violet-anchor-meadow-482"

    def change():
        page = client.get("/account/password")
        return client.post("/account/password", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                      "current_password": ALICE_PASSWORD, "new_password": new,
                                                      "confirm_password": new})

    assert AuthActions(client).login().status_code == 302
    for _ in range(2):
        with refused(app, "audit_events", "INSERT"):
            assert_clear_503(change())
        assert failed_attempts(app) == 0
    assert change().status_code == 200


def test_an_address_change_the_database_refuses_counts_no_failed_attempt(app, client, seeded):
    from test_audit import mobile_tokens

    assert AuthActions(client).login().status_code == 302
    token = mobile_tokens(client)["access_token"]

    def change():
        return client.put("/localapi/email", headers={"Authorization": f"Bearer {token}"},
                          json={"email": "alice@example.org", "current_password": ALICE_PASSWORD})

    with refused(app, "account_tokens", "INSERT"):
        assert change().status_code == 503
    assert failed_attempts(app) == 0
    assert change().status_code == 202
