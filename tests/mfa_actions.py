"""Helpers for tests of second factors: enrol alice's authenticator app through the page, and
compute codes from the secret the page shows (as a phone would)."""

import re
import time

import pyotp

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
