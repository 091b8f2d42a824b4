"""Helpers for tests/test_factors_review.py: a seeded 2-worker gunicorn server (tests/servers.py)
on SQLite or on the suite's PostgreSQL database, an app on the same database to read it, and a
browser signed in to it; every form of a factor sent twice at once (run_together) or twice in a row."""

import time
from contextlib import contextmanager

import pyotp
import requests
from sqlalchemy import func, select

from app import create_app
from conftest import close_connections, make_config
from identity.extensions import db
from identity.models import AuditEvent, User
from servers import csrf_from, run_together, seeded_server, sign_in

PASSWORD = "tulip-quartz-harbor-917"
SEED = {
    "api_scopes": [],
    "clients": [],
    "users": [{"username": "alice", "email": "alice@example.com", "password": PASSWORD, "name": "Alice Example"}],
}


@contextmanager
def factor_server(tmp_path, name: str):
    """(server, app): the server, and an app on its database (for reads and for enrolling)."""
    with seeded_server(tmp_path, SEED, name=name) as server:
        app = create_app(make_config(server.database_uri))
        try:
            yield server, app
        finally:
            close_connections(app)


def user_id(app, username: str = "alice") -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def events(app, kind: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == kind))


def away_from_a_step_boundary() -> None:
    """Wait, if needed, until the 30-second step has at least 5 seconds left (the server's clock is real)."""
    while 30 - time.time() % 30 < 5:
        time.sleep(0.5)


def code(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps)


def enrol(app, username: str = "alice") -> tuple[str, list[str]]:
    """Give the user an authenticator app through the service, confirmed with the previous step's
    code (so the current and the next step's codes are still new); (secret, recovery codes)."""
    from identity.services import mfa

    away_from_a_step_boundary()
    with app.app_context():
        secret = mfa.start_totp(user_id(app, username))
        # at this process's code time (a test may have stopped it: mfa_actions.step_clock)
        codes = mfa.confirm_totp(user_id(app, username), pyotp.TOTP(secret).at(mfa.code_time() - 30))
    return secret, codes


def browser_signed_in(base: str, username: str = "alice", password: str = PASSWORD) -> requests.Session:
    browser = requests.Session()
    response = sign_in(browser, base, username, password)
    assert response.status_code == 302, response.text
    return browser


def twice_at_once(browser: requests.Session, url: str, form: dict) -> list[requests.Response]:
    """The same form (same cookies, same CSRF token) posted twice at the same moment."""
    post = lambda: browser.post(url, data=form, timeout=30, allow_redirects=False)
    answers = run_together(post, post)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


def mfa_form(browser: requests.Session, base: str, action: str, **fields) -> dict:
    page = browser.get(base + "/account/mfa", timeout=30)
    return {"csrf_token": csrf_from(page.text), "action": action, **fields}
