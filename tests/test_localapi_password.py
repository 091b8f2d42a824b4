"""POST /localapi/password: the contract's table, the password rules, lockout, what a change revokes."""

import json
import time

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import RefreshToken, User, UserSession
from identity.services import accounts, browser_sessions, clients
from identity.services import mail as mail_service
from identity.store.browser_sessions import sid_digest
from statements import sqlite_write_lock, statements
from test_localapi_support import (  # noqa: F401  (fixtures)
    ALICE_PASSWORD,
    CHEAP_ARGON2,
    NEW_PASSWORD,
    api,
    app_config,
    problem_of,
)

LONG_NAME = "marguerite-delacroix"
LONG_EMAIL = "marguerite.delacroix@example.org"
LONG_PASSWORD = "saffron-meadow-copper-88"


def errors_of(response) -> dict:
    assert response.status_code == 400, response.get_data(as_text=True)
    body = problem_of(response)
    assert body["title"] == "One or more validation errors occurred."
    assert isinstance(body["errors"], dict) and body["errors"]
    return body["errors"]


def sign_in(app, username: str, password: str) -> bool:
    with app.test_request_context():
        return accounts.authenticate(username, password).user is not None


# --- changed: 204 ------------------------------------------------------------------------


def test_change_password(app, api):
    before = api.user_row()
    response = api.change_password(api.token())
    assert response.status_code == 204
    assert response.get_data() == b""
    after = api.user_row()
    assert after["password_version"] == before["password_version"] + 1
    assert after["password_hash"] != before["password_hash"]
    assert after["password_changed_at"] >= before["password_changed_at"]
    assert not sign_in(app, "alice", ALICE_PASSWORD)
    assert sign_in(app, "alice", NEW_PASSWORD)


def test_tokens_issued_before_a_change_are_refused(api):
    old, other_client = api.token(), api.token(client_id="spa")
    assert api.change_password(old).status_code == 204
    for token in (old, other_client):
        response = api.get_account(token)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert api.change_password(token, current=NEW_PASSWORD, new=LONG_PASSWORD).status_code == 401
    fresh = api.token()
    assert api.get_account(fresh).status_code == 200


def test_account_shows_the_change(api):
    api.change_password(api.token())
    body = api.get_account(api.token()).get_json()
    changed = time.mktime(time.strptime(body["password_changed_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(changed - time.time()) < 60


def add_refresh_token(user_id: int, n: int, *, client_id="mobile", revoked_at=None) -> None:
    stamp = int(time.time())
    db.session.add(RefreshToken(token_hash=f"{n:064x}", family_id=f"family-{n}", client_id=client_id, user_id=user_id,
                                scope="openid offline_access", issued_at=stamp, expires_at=stamp + 3600,
                                revoked_at=revoked_at))


def test_change_revokes_refresh_tokens_and_sessions(app, api):
    with app.test_request_context():
        bob = accounts.create_user(LONG_NAME, LONG_PASSWORD, email=LONG_EMAIL)
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        add_refresh_token(alice.id, 1)
        add_refresh_token(alice.id, 2, client_id="spa")
        add_refresh_token(alice.id, 3, revoked_at=1000)
        add_refresh_token(bob.id, 4)
        db.session.commit()
        alice_sid, bob_sid = browser_sessions.start_session(alice).sid, browser_sessions.start_session(bob).sid
    assert api.change_password(api.token()).status_code == 204
    by_family = {row.family_id: row for row in api.refresh_tokens()}
    assert by_family["family-1"].revoked_at and by_family["family-2"].revoked_at
    assert by_family["family-3"].revoked_at == 1000
    assert by_family["family-4"].revoked_at is None
    with app.app_context():
        assert browser_sessions.load_session(alice_sid) is None
        assert browser_sessions.load_session(bob_sid) is not None
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid_digest(bob_sid))).revoked_at is None


def test_change_is_audited_with_client_and_ip(api):
    api.change_password(api.token(client_id="spa"), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    [event] = api.audit_events("password_changed")
    assert event.client_id == "spa"
    assert event.ip == "203.0.113.9"
    assert event.user_id is not None


# --- password rules: 400 on new_password, nothing changes ---------------------------------


@pytest.fixture
def long_named(app, api) -> str:
    """A user whose names are long enough to be valid passwords, and a token for them."""
    with app.test_request_context():
        accounts.create_user(LONG_NAME, LONG_PASSWORD, email=LONG_EMAIL)
    return api.token(username=LONG_NAME)


RULES = {  # new password: the message it gets
    "short": ("too-short-12", "Use at least 15 characters."),
    "14 characters": ("a" * 7 + "b" * 7, "Use at least 15 characters."),
    "129 characters": ("correct horse " * 9 + "abc", "Use at most 128 characters."),
    "common": ("qwertyuiop12345", "This password is too common"),
    "common, other case": ("QwertyUIOP12345", "This password is too common"),
    "common, with spaces": ("qwerty uiop 12345", "This password is too common"),
    "control character": ("harbor-lantern\x07-917", "Use printable characters only."),
    "newline": ("harbor-lantern\n-917-x", "Use printable characters only."),
    "the current password": (ALICE_PASSWORD, "The new password must differ from the current one."),
    "the current password, NFKC-equal": ("ｔｕｌｉｐ-quartz-harbor-917", "The new password must differ from the current one."),
}


@pytest.mark.parametrize("new, message", RULES.values(), ids=RULES.keys())
def test_password_rules(api, new, message):
    before = api.user_row()
    errors = errors_of(api.change_password(api.token(), new=new))
    assert list(errors) == ["new_password"]
    assert any(m.startswith(message) for m in errors["new_password"]), errors
    assert api.user_row() == before


@pytest.mark.parametrize("new", [LONG_NAME, LONG_NAME.upper(), LONG_EMAIL, LONG_EMAIL.upper(), LONG_EMAIL.split("@")[0]])
def test_password_must_not_be_the_users_names(api, long_named, new):
    before = api.user_row(LONG_NAME)
    errors = errors_of(api.change_password(long_named, current=LONG_PASSWORD, new=new))
    assert errors["new_password"] == ["The password must not be your user name or email address."]
    assert api.user_row(LONG_NAME) == before


ACCEPTED = {
    "exactly 15": "fjord-amber-412",
    "64 characters": "a quiet lighthouse keeper counts seventeen gulls every morning..",
    "128 characters": "correct horse " * 9 + "ab",
    "spaces only between words": "four words with spaces",
    "unicode": "größe-ünïcödé-密码-пароль-✓",
    "emoji": "🐧🐧 penguins march south 🐧🐧",
}


@pytest.mark.parametrize("new", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_passwords_the_policy_accepts(app, api, new):
    assert api.change_password(api.token(), new=new).status_code == 204
    assert sign_in(app, "alice", new)


def test_minimum_length_is_configurable(app, api):
    app.config["PASSWORD_MIN_LENGTH"] = 30  # after seeding: alice's password is shorter
    errors = errors_of(api.change_password(api.token(), new="twenty-five-characters-xx"))
    assert errors["new_password"] == ["Use at least 30 characters."]


def test_confirmation_mismatch(api):
    before = api.user_row()
    errors = errors_of(api.change_password(api.token(), confirm=NEW_PASSWORD + "x"))
    assert errors == {"confirm_password": ["The confirmation does not match the new password."]}
    assert api.user_row() == before


def test_rules_and_mismatch_are_reported_together(api):
    errors = errors_of(api.change_password(api.token(), new="short", confirm="other"))
    assert set(errors) == {"new_password", "confirm_password"}


def test_wrong_current_password(app, api):
    before = api.user_row()
    errors = errors_of(api.change_password(api.token(), current="not-the-password-at-all"))
    assert errors == {"current_password": ["The current password is incorrect."]}
    after = api.user_row()
    assert after["failed_attempts"] == before["failed_attempts"] + 1
    assert {k: v for k, v in after.items() if k != "failed_attempts"} == {
        k: v for k, v in before.items() if k != "failed_attempts"}
    assert sign_in(app, "alice", ALICE_PASSWORD)
    [event] = api.audit_events("password_change_failed")
    assert event.client_id == "mobile"


def test_wrong_current_password_is_checked_before_the_rules(api):
    errors = errors_of(api.change_password(api.token(), current="wrong-password-here", new="short"))
    assert list(errors) == ["current_password"]


# --- invalid bodies: 400 (413 when huge), nothing changes ---------------------------------

VALID = {"current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}

BAD_BODIES = {  # name: (request kwargs, the field that gets the message)
    "missing field": ({"json": {k: v for k, v in VALID.items() if k != "confirm_password"}}, "confirm_password"),
    "empty object": ({"json": {}}, "current_password"),
    "extra field": ({"json": {**VALID, "username": "mallory"}}, "username"),
    "number": ({"json": {**VALID, "new_password": 123456789012345678}}, "new_password"),
    "null": ({"json": {**VALID, "current_password": None}}, "current_password"),
    "list": ({"json": {**VALID, "new_password": [NEW_PASSWORD]}}, "new_password"),
    "object": ({"json": {**VALID, "confirm_password": {"value": NEW_PASSWORD}}}, "confirm_password"),
    "boolean": ({"json": {**VALID, "current_password": True}}, "current_password"),
    "empty current password": ({"json": {**VALID, "current_password": ""}}, "current_password"),
    "very long password": ({"json": {**VALID, "new_password": "x" * 5000, "confirm_password": "x" * 5000}}, "new_password"),
    "array body": ({"json": [VALID]}, "body"),
    "string body": ({"json": "hello"}, "body"),
    "null body": ({"data": "null", "content_type": "application/json"}, "body"),
    "invalid JSON": ({"data": '{"current_password": ', "content_type": "application/json"}, "body"),
    "not UTF-8": ({"data": b'{"current_password": "\xff\xfe"}', "content_type": "application/json"}, "body"),
    "empty body": ({"data": "", "content_type": "application/json"}, "body"),
    "no body": ({}, "body"),
    "deeply nested": ({"data": "[" * 30_000 + "]" * 30_000, "content_type": "application/json"}, "body"),
    "form encoded": ({"data": VALID}, "body"),
    "JSON as text/plain": ({"data": json.dumps(VALID), "content_type": "text/plain"}, "body"),
    "JSON as multipart": ({"data": {"body": json.dumps(VALID)}, "content_type": "multipart/form-data"}, "body"),
}


@pytest.mark.parametrize("kwargs, field", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_invalid_bodies(api, kwargs, field):
    before = api.user_row()
    errors = errors_of(api.post_password(api.token(), **kwargs))
    assert field in errors, errors
    assert all(isinstance(m, str) for messages in errors.values() for m in messages)
    assert api.user_row() == before


def test_problem_shape(api):
    body = problem_of(api.post_password(api.token(), json={"new_password": 1}))
    assert body["type"].startswith("https://")
    assert body["status"] == 400
    assert body["detail"]
    assert set(body["errors"]) == {"current_password", "new_password", "confirm_password"}


def test_json_content_type_with_charset_is_accepted(api):
    response = api.post_password(api.token(), data=json.dumps(VALID), content_type="application/json; charset=utf-8")
    assert response.status_code == 204


def test_huge_body_is_413(app, api):
    before = api.user_row()
    huge = json.dumps({**VALID, "new_password": "x" * app.config["MAX_CONTENT_LENGTH"]})
    response = api.post_password(api.token(), data=huge, content_type="application/json")
    assert response.status_code == 413
    problem_of(response)
    assert api.user_row() == before


# --- lockout: 429 with Retry-After ----------------------------------------------------

LOCKOUT = {**CHEAP_ARGON2, "LOCKOUT_MAX_FAILURES": 3, "LOCKOUT_SECONDS": 120}


def assert_locked(response, at_most: int):
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= at_most
    assert problem_of(response)["title"] == "Account temporarily locked"


@pytest.mark.parametrize("app_config", [LOCKOUT])
def test_wrong_current_passwords_lock_the_account(app, api):
    token = api.token()
    for attempt in range(2):
        assert errors_of(api.change_password(token, current=f"wrong-password-{attempt}"))["current_password"]
    assert_locked(api.change_password(token, current="wrong-password-3"), 120)
    row = api.user_row()
    assert row["locked_until"] > time.time() + 100
    # while locked even the right password is refused, and nothing changes
    assert_locked(api.change_password(token), 120)
    assert api.user_row()["password_hash"] == row["password_hash"]
    # the lock is shared with sign-in
    with app.test_request_context():
        assert accounts.authenticate("alice", ALICE_PASSWORD).locked
    assert len(api.audit_events("account_locked")) == 1


@pytest.mark.parametrize("app_config", [LOCKOUT])
def test_failed_sign_ins_count_toward_the_same_lockout(app, api):
    for _ in range(2):
        assert not sign_in(app, "alice", "wrong-password-at-sign-in")
    assert_locked(api.change_password(api.token(), current="wrong-password-here"), 120)


@pytest.mark.parametrize("app_config", [LOCKOUT])
def test_lock_expires(app, api):
    token = api.token()
    for attempt in range(3):
        api.change_password(token, current=f"wrong-password-{attempt}")
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).locked_until = int(time.time()) - 1
        db.session.commit()
    assert api.change_password(token).status_code == 204


@pytest.mark.parametrize("app_config", [LOCKOUT])
def test_success_resets_the_failure_count(api):
    token = api.token()
    for attempt in range(2):
        api.change_password(token, current=f"wrong-password-{attempt}")
    assert api.change_password(token).status_code == 204
    assert api.user_row()["failed_attempts"] == 0


# --- rate limits (Flask-Limiter): per token and per client IP ------------------------


def limited(**limits) -> dict:
    return {**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://", **limits}


def assert_rate_limited(response):
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    problem_of(response)


@pytest.mark.parametrize("app_config", [limited(RATELIMIT_PER_TOKEN="2 per minute", RATELIMIT_SENSITIVE="100 per minute")])
def test_per_token_limit(api):
    token, other = api.token(), api.token()
    for _ in range(2):
        assert api.post_password(token, json={}).status_code == 400
    assert_rate_limited(api.post_password(token, json={}))
    assert api.post_password(other, json={}).status_code == 400


@pytest.mark.parametrize("app_config", [limited(RATELIMIT_PER_TOKEN="100 per minute", RATELIMIT_SENSITIVE="3 per minute")])
def test_per_ip_limit(api):
    for _ in range(3):
        assert api.post_password(api.token(), json={}).status_code == 400
    assert_rate_limited(api.post_password(api.token(), json={}))
    # also without a token: guessing tokens is limited too
    assert_rate_limited(api.post_password(None, json={}))
    elsewhere = {"REMOTE_ADDR": "198.51.100.20"}
    assert api.post_password(api.token(), json={}, environ_base=elsewhere).status_code == 400


@pytest.mark.parametrize("app_config", [limited(RATELIMIT_DEFAULT="2 per minute")])
def test_account_has_the_default_limit(api):
    token = api.token()
    for _ in range(2):
        assert api.get_account(token).status_code == 200
    assert_rate_limited(api.get_account(token))


def test_the_new_password_is_hashed_before_the_change_takes_the_write_lock(app, api, monkeypatch):
    """On SQLite the first write of a transaction takes the database's one write lock. The new
    password's hash (24 ms at production settings) must come before it, or every other worker's
    write waits behind it (the benchmark's password changes ran at 0.54 x the pure hash rate)."""
    with app.app_context():
        dialect, path = db.engine.dialect.name, db.engine.url.database
    if dialect != "sqlite":
        pytest.skip("the database-wide write lock is SQLite's")
    real_hash, probes = accounts.hash_password, []

    def hash_and_probe(password: str) -> str:
        probes.append(sqlite_write_lock(path))
        return real_hash(password)

    monkeypatch.setattr(accounts, "hash_password", hash_and_probe)
    assert api.change_password(api.token()).status_code == 204
    assert probes == ["free"]
    assert sign_in(app, "alice", NEW_PASSWORD)


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 300}])
def test_a_change_reads_the_user_once_and_not_its_client(app, api, mail):
    """A change reads the user's row once (locked) and asks nothing it already knows: not the
    user's subject again for the logout tokens, not the whole row again after the commit for the
    notice, not the client's row for the notice's client name (the worker's client snapshot)."""
    token = api.token()
    api.get_account(token)  # warm the key ring and the autocommit connection
    with app.test_request_context():
        assert clients.cached_client("mobile") is not None  # and the client snapshot
    with statements(app) as run:
        assert api.change_password(token).status_code == 204
    reads = [sql for sql in run.pooled if sql.lstrip().upper().startswith("SELECT")]
    of_users = [sql for sql in reads if "FROM users" in sql]
    assert len(of_users) == 1 and "password_hash" in of_users[0], reads
    assert not [sql for sql in reads if "FROM clients" in sql], reads
    with app.app_context():
        assert mail_service.wait_until_sent()
    text = mail.text(mail.wait_for(to="alice@example.com"))
    assert "(from Mobile App" in text and "Alice Example" in text
    assert sign_in(app, "alice", NEW_PASSWORD)
