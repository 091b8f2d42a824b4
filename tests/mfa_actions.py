"""Helpers for tests of second factors: enrol alice's authenticator app through the page, and
compute codes from the secret the page shows (as a phone would)."""

import re
import time

import pyotp
import pytest

from conftest import ALICE_PASSWORD, csrf_token

SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
CODE_RE = re.compile(r"<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>")


class StepClock:
    """The server's TOTP clock (services/mfa.py's `now`), moved on a step at a time by a test
    instead of waiting 30 seconds; codes are computed for the same time."""

    def __init__(self):
        self.offset = 0

    def now(self) -> int:
        return int(time.time()) + self.offset

    def next_step(self) -> None:
        self.offset += 30


CLOCK = StepClock()


@pytest.fixture
def step_clock(monkeypatch):
    """TOTP time that a test moves on a step at a time (no 30-second waits); import it to use it."""
    from identity.services import mfa

    CLOCK.offset = 0
    monkeypatch.setattr(mfa, "now", CLOCK.now)
    return CLOCK


def enrol_user(app, username="alice") -> tuple[str, list[str]]:
    """Give a user an authenticator app through the service (the page is tests/test_mfa.py's);
    returns (secret, recovery codes). The enrolment's step is used: the clock moves on one."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import User
    from identity.services import mfa

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        secret = mfa.start_totp(user_id)
        codes = mfa.confirm_totp(user_id, code_at(secret))
    CLOCK.next_step()
    return secret, codes


def sign_in_with_code(client, secret: str, username="alice", password=ALICE_PASSWORD, return_url=None):
    """Both steps; returns the second step's response. The code's step is then used: the clock moves on."""
    first = password_step(client, username, password, return_url=return_url)
    assert first.status_code == 302 and "/account/login/mfa" in first.headers["Location"], first.headers.get("Location")
    response = second_step(client, code_at(secret), return_url=return_url)
    CLOCK.next_step()
    return response


def claims(jwt: str) -> dict:
    """The payload of a JWT (its signature is tests/test_token.py's business)."""
    import base64
    import json

    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def code_at(secret: str, step_offset: int = 0) -> str:
    """The code for the server's current 30-second step (or one `step_offset` steps away)."""
    return pyotp.TOTP(secret).at(CLOCK.now() + 30 * step_offset)


def post_mfa(client, action: str, **fields):
    page = client.get("/account/mfa")
    return client.post("/account/mfa", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                             "action": action, **fields})


def enrol(client) -> tuple[str, list[str]]:
    """Set up an authenticator app for the signed-in user; returns (secret, recovery codes)."""
    started = post_mfa(client, "start")
    assert started.status_code == 200, started.get_data(as_text=True)
    secret = SECRET_RE.search(started.get_data(as_text=True)).group(1)
    confirmed = post_mfa(client, "confirm", code=code_at(secret))
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    codes = CODE_RE.findall(confirmed.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def password_step(client, username="alice", password=ALICE_PASSWORD, return_url=None):
    from actions import AuthActions

    return AuthActions(client).login(username, password, return_url=return_url)


def second_step(client, code: str, return_url: str | None = None):
    from urllib.parse import urlencode

    url = "/account/login/mfa" + (f"?{urlencode({'returnUrl': return_url})}" if return_url else "")
    page = client.get(url)
    assert page.status_code == 200, page.headers.get("Location")
    return client.post(url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})
