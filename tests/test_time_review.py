"""Lifetimes and clocks at their boundaries: what a page or header says about time agrees with
the data it comes from."""

import re
import time

import pytest
from sqlalchemy import select, update

from actions import AuthActions
from identity.extensions import db
from identity.models import User
from mfa_actions import CLOCK, code_at, enrol_user, post_mfa, step_clock  # noqa: F401


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def _lock_alice(app, seconds: int) -> None:
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(locked_until=int(time.time()) + seconds))
        db.session.commit()


def _seconds_said(html: str) -> int:
    return int(re.search(r"Try again in (\d+) seconds", html).group(1))


def test_the_factors_page_tells_the_lock_time_left_not_the_whole_lockout(client, app, seeded):
    """An account locked earlier (by sign-in failures elsewhere) has 100 of its LOCKOUT_SECONDS
    (300) left: the factors page says so, as the password page does, not 300."""
    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app)
    _lock_alice(app, 100)
    refused = post_mfa(client, "regenerate", otp=code_at(secret))
    assert refused.status_code == 400
    assert 95 <= _seconds_said(refused.get_data(as_text=True)) <= 100
