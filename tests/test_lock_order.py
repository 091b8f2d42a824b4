"""The writes of one user's requests take that user's row first, then the rows of the user's
codes: two requests that both spend a code of the same user (a sign-in's second step, a password
or address change, a factor's removal) then queue one behind the other. Taken the other way
round by one of them, PostgreSQL finds the two waiting for each other and aborts one, whose user
is answered "database unavailable". Each test meets the two at the point where they would have
crossed (tests/races.py), never by timing. PostgreSQL only: on SQLite a writing transaction holds
the database's one write lock, so two never wait for each other's rows."""

import pytest
from sqlalchemy import select

from conftest import ALICE_PASSWORD, postgresql_only
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import accounts, mfa, verification
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first_unless_queued, in_own_context, other_workers

pytestmark = postgresql_only()

NEW_PASSWORD = "a-long-new-passphrase-here"


def _change_password(user_id: int, code: str):
    return accounts.change_password(user_id, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD, otp=code)


def _change_address(user_id: int, code: str):
    return verification.request_email_change(user_id, "alice@example.org", ALICE_PASSWORD, otp=code)


@pytest.mark.parametrize("change", [_change_password, _change_address], ids=["password", "address"])
def test_a_change_with_a_code_and_a_second_step_at_the_same_moment_both_get_an_answer(
        app, seeded, database_uri, step_clock, change):
    """alice finishes signing in on her phone (the second step, a code from her app) at the moment
    her laptop changes her password, or her address, with the next code: each spends a code of the
    same app. The second step spent its code, then waited for her row, which the change held
    while it waited for the code's row: on PostgreSQL one of the two was aborted and answered 503
    "database unavailable"."""
    secret, _ = enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    changed = {}
    with other_workers(database_uri) as (phone,):
        browser = phone.test_client()
        assert "/account/login/mfa" in password_step(browser).headers["Location"]
        laptop = in_own_context(app, lambda: change(alice, code_at(secret, 1)), changed)
        with phone.app_context(), amid_the_first_unless_queued(phone, "UPDATE totp_factors", laptop) as started:
            step = second_step(browser, code_at(secret))
    assert started
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                    .order_by(AuditEvent.id)).all()
        db.session.rollback()
    # the second step went through, and the change, queued behind it, too
    outcome = changed["done"]
    assert not isinstance(outcome, Exception), repr(outcome)
    assert step.status_code == 302, step.get_data(as_text=True)
    assert "sign_in" in events and "mfa_failed" not in events, events
    assert ("password_changed" if change is _change_password else "email_change_requested") in events, events


def _new_recovery_codes(user_id: int, code: str):
    """The account page's "New recovery codes", proven with a code (no recent sign-in with the factor)."""
    mfa.prove_second_factor(user_id, code, recent_mfa=False, purpose="regenerate_codes")
    return mfa.regenerate_recovery_codes(user_id)


def test_new_recovery_codes_asked_with_a_code_as_a_second_step_finishes_both_get_an_answer(
        app, seeded, database_uri, step_clock):
    """alice asks for new recovery codes on her laptop, proving it with a code from her app, as her
    phone finishes signing in with the next one. The page spent its code, then wrote her row (her
    lockout count), which the second step had taken before its own code: on PostgreSQL one of
    the two was aborted and answered 503 "database unavailable"."""
    secret, _ = enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    with other_workers(database_uri) as (phone,):
        browser = phone.test_client()
        assert "/account/login/mfa" in password_step(browser).headers["Location"]
        finished = {}

        def finish_sign_in():  # the phone, right after the page has spent its code
            finished["second step"] = second_step(browser, code_at(secret, 1))

        with app.app_context():
            with amid_the_first_unless_queued(app, "UPDATE totp_factors", finish_sign_in) as started:
                codes = _new_recovery_codes(alice, code_at(secret))
            assert started
            events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                        .order_by(AuditEvent.id)).all()
            db.session.rollback()
    assert len(codes) == 10
    step = finished["second step"]
    assert step.status_code == 302, step.get_data(as_text=True)
    assert "recovery_codes_regenerated" in events and "sign_in" in events and "mfa_failed" not in events, events

