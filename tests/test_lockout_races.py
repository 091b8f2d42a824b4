"""Lockout holds under concurrency: bursts of guesses sent at once, from several client processes,
to two instances of two gunicorn workers each on one database, never get more than
LOCKOUT_MAX_FAILURES of them checked before the lock (issue 15).

Each attempt reserves its place in the failure count before its hash is computed
(services/accounts.py), so the count is never behind the hashing. The guesses checked are
counted from the audit log the servers write (one event per password verified), not from a mock.
Runs on SQLite (a file both instances share) and on PostgreSQL (FLASK_SQLALCHEMY_DATABASE_URI).
"""

import json
import multiprocessing
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from app import create_app
from conftest import empty_database, make_config
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services.seed import apply_seed, load_seed
from servers import csrf_from, token_request, two_instances

pytestmark = pytest.mark.server

LIMIT = 4
ISSUER = "https://id.example.test"
SECRET = "racer-secret-0123456789"
NEW_PASSWORD = "pepper-nebula-canyon-735"
USERS = {
    "pageburst": "amber-falcon-river-314",
    "mixedburst": "granite-willow-echo-271",
    "grantburst": "harbor-mosaic-lumen-858",
    "apiburst": "saffron-glacier-ink-642",
}
SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "clients": [{"client_id": "racer", "client_name": "Racer", "client_secrets": [SECRET],
                 "allowed_grant_types": ["password"], "allowed_scopes": ["openid", "IdentityServerApi"]}],
    "users": [{"username": name, "email": f"{name}@example.com", "password": password}
              for name, password in USERS.items()],
}
PROCESSES = 3  # client processes, each sending its share of a burst from its own threads
THREADS = 8


@pytest.fixture(scope="module")
def shared_app(_migrated, database_uri):
    app = create_app(make_config(database_uri))
    empty_database(app)
    with app.app_context():
        apply_seed(load_seed(json.dumps(SEED)))
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def instances(shared_app, database_uri, tmp_path_factory):
    """Instances A and B, 2 workers each, with the production Argon2 cost (the race is in its ~25 ms)."""
    log_dir = tmp_path_factory.mktemp("lockout")
    env = {"FLASK_LOCKOUT_MAX_FAILURES": str(LIMIT), "FLASK_LOCKOUT_SECONDS": "600",
           "FLASK_RATELIMIT_ENABLED": "false"}  # the bursts are faster than the per-IP limits
    common = dict(workers=2, issuer=ISSUER, env=env, log_dir=log_dir)  # one issuer: instances behind one address
    with two_instances(database_uri, **common) as both:
        yield both


# --- attempts, as the client processes send them -----------------------------------------------


def _page_attempt(url: str, username: str, password: str) -> int:
    browser = requests.Session()
    page = browser.get(url + "/account/login", timeout=60)
    return browser.post(url + "/account/login", timeout=60, allow_redirects=False,
                        data={"csrf_token": csrf_from(page.text), "username": username, "password": password}).status_code


def _grant_attempt(url: str, username: str, password: str) -> int:
    return token_request(url, "racer", SECRET, grant_type="password", username=username, password=password,
                         scope="openid IdentityServerApi").status_code


def _api_attempt(url: str, token: str, password: str) -> int:
    return requests.post(url + "/localapi/password", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                         json={"current_password": password, "new_password": NEW_PASSWORD,
                               "confirm_password": NEW_PASSWORD}).status_code


_ATTEMPTS = {"page": _page_attempt, "grant": _grant_attempt, "api": _api_attempt}


def _send_share(kind: str, jobs: list[tuple[str, str, str]]) -> list[int]:
    """One client process: its share of the burst, all at once from its threads."""
    attempt = _ATTEMPTS[kind]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda job: attempt(*job), jobs))


def burst(kind: str, jobs: list[tuple[str, str, str]]) -> list[int]:
    """Send the attempts from PROCESSES client processes at once; their statuses, in no order."""
    shares = [jobs[i::PROCESSES] for i in range(PROCESSES)]
    with multiprocessing.get_context("fork").Pool(PROCESSES) as pool:
        results = pool.starmap(_send_share, [(kind, share) for share in shares])
    return [status for share in results for status in share]


def wrong() -> str:
    return "wrong-guess-" + secrets.token_hex(6)


def spread(servers, username_or_token: str, passwords: list[str]) -> list[tuple[str, str, str]]:
    return [(servers[i % len(servers)].url, username_or_token, password) for i, password in enumerate(passwords)]


# --- what the servers recorded ------------------------------------------------------------------


def checked(app, username: str, *events: str) -> list[AuditEvent]:
    """The audit events of these kinds for the user: one for every password the servers verified."""
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.user_id == user_id,
                                                                AuditEvent.event.in_(events))))
        db.session.remove()
    return rows


def wrong_checked(app, username: str, event: str) -> int:
    """Wrong passwords verified: failures for a bad password (not those refused as locked)."""
    return sum(1 for row in checked(app, username, event) if (row.detail or {}).get("reason", "bad_password") == "bad_password")


def lock_of(app, username: str) -> int:
    with app.app_context():
        locked_until = db.session.scalar(select(User.locked_until).where(User.username == username))
        db.session.remove()
    return locked_until


def logs(servers) -> str:
    return "\n".join(f"--- {s.name} ---\n{s.log(30)}" for s in servers)


# --- the tests -----------------------------------------------------------------------------------


def test_a_burst_of_wrong_passwords_at_the_sign_in_page_gets_exactly_the_limit_checked(shared_app, instances):
    statuses = burst("page", spread(instances, "pageburst", [wrong() for _ in range(36)]))
    assert set(statuses) == {400}, f"{sorted(set(statuses))}\n{logs(instances)}"
    assert wrong_checked(shared_app, "pageburst", "sign_in_failed") == LIMIT
    assert len(checked(shared_app, "pageburst", "account_locked")) == 1
    assert lock_of(shared_app, "pageburst") > 0
    # the right password now fails too: the account is locked
    assert _page_attempt(instances[1].url, "pageburst", USERS["pageburst"]) == 400
    assert checked(shared_app, "pageburst", "sign_in") == []


def test_the_right_password_inside_a_burst_resets_only_the_guesses_before_it(shared_app, instances):
    """The issue's case: wrong passwords and the right one at once. A success resets the count
    (the guesses reserved before it), so at most LIMIT - 1 guesses before it and LIMIT after it
    are checked, and the burst still ends locked."""
    passwords = [wrong() for _ in range(36)]
    passwords.insert(len(passwords) // 3, USERS["mixedburst"])
    statuses = burst("page", spread(instances, "mixedburst", passwords))
    assert statuses.count(302) <= 1 and set(statuses) <= {302, 400}, f"{statuses}\n{logs(instances)}"
    assert wrong_checked(shared_app, "mixedburst", "sign_in_failed") <= 2 * LIMIT - 1
    assert lock_of(shared_app, "mixedburst") > 0


def test_a_burst_of_wrong_passwords_at_the_password_grant_gets_exactly_the_limit_checked(shared_app, instances):
    statuses = burst("grant", spread(instances, "grantburst", [wrong() for _ in range(36)]))
    assert set(statuses) == {400}, f"{sorted(set(statuses))}\n{logs(instances)}"
    assert wrong_checked(shared_app, "grantburst", "sign_in_failed") == LIMIT
    assert _grant_attempt(instances[0].url, "grantburst", USERS["grantburst"]) == 400


def test_a_burst_of_wrong_current_passwords_at_the_local_api_gets_exactly_the_limit_checked(shared_app, instances):
    response = token_request(instances[0].url, "racer", SECRET, grant_type="password", username="apiburst",
                             password=USERS["apiburst"], scope="openid IdentityServerApi")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    statuses = burst("api", spread(instances, token, [wrong() for _ in range(36)]))
    assert 204 not in statuses and set(statuses) <= {400, 429}, f"{sorted(set(statuses))}\n{logs(instances)}"
    assert wrong_checked(shared_app, "apiburst", "password_change_failed") == LIMIT
    assert len(checked(shared_app, "apiburst", "account_locked")) == 1
    # the right current password is refused while the lock lasts, and nothing changed
    assert _api_attempt(instances[1].url, token, USERS["apiburst"]) in (400, 429)
    assert checked(shared_app, "apiburst", "password_changed") == []
