"""Browser sign-in with a cookie session: messages, lockout, cookies, return URLs, sign-out."""

from urllib.parse import quote

import pytest
from sqlalchemy import select

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User, UserSession
from identity.web.account import SIGN_IN_FAILED
from statements import writes


@pytest.fixture
def auth(client):
    return AuthActions(client)


def _user(app, username="alice"):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == username))


def test_login_page_has_form_and_csrf(client, seeded):
    page = client.get("/account/login")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for field in ('name="username"', 'name="password"', 'name="remember"'):
        assert field in html
    assert csrf_token(html)
    assert page.headers["Cache-Control"] == "no-store"


def test_successful_sign_in_creates_a_session_and_goes_home(client, auth, app, seeded):
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    with app.app_context():
        sessions = db.session.scalars(select(UserSession)).all()
        assert len(sessions) == 1 and sessions[0].revoked_at is None
    assert "alice" in client.get("/").get_data(as_text=True).lower()


def test_sign_in_writes_its_session_and_audit_event(client, auth, app, seeded):
    assert auth.login().status_code == 302
    with app.app_context():
        session = db.session.scalar(select(UserSession))
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "sign_in"))
        assert session.user_id == event.user_id == _user(app).id and session.revoked_at is None
        assert session.auth_time == session.created_at and abs(event.at - session.created_at) <= 1
    with client.session_transaction() as cookie_session:
        sid = cookie_session["_user_id"]
    page = client.get("/diagnostics").get_data(as_text=True)
    assert page.count(session.public_sid) >= 1 and sid not in page  # the cookie's identifier stays secret


def test_a_session_cookie_is_read_back_as_its_user_and_sign_in_time(client, auth, app, seeded):
    from identity.services import browser_sessions

    assert auth.login().status_code == 302
    with client.session_transaction() as cookie_session:
        sid = cookie_session["_user_id"]
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        alice = _user(app)
        assert browser_sessions.load_session(row.sid) is None  # the table keeps a digest, not a sid
        user, auth_time, _, amr = browser_sessions.load_session(sid)
        assert amr == "pwd"  # a password alone (RFC 8176)
        assert (user.id, user.subject, user.username, user.email, user.password_version) == (
            alice.id, alice.subject, alice.username, alice.email, alice.password_version)
        assert auth_time == row.auth_time
        browser_sessions.end_session(sid)
        assert browser_sessions.load_session(sid) is None
        assert browser_sessions.load_session("no-such-sid") is None
    assert client.get("/diagnostics").status_code == 302  # the ended session signs the cookie out


def test_sign_in_rehashes_a_password_stored_with_older_parameters(auth, app, seeded):
    before = _user(app).password_hash
    app.config["ARGON2_TIME_COST"] += 1
    assert auth.login().status_code == 302
    after = _user(app).password_hash
    assert after != before and f"t={app.config['ARGON2_TIME_COST']}" in after
    assert auth.login().status_code == 302, "the new hash verifies"
    assert _user(app).password_hash == after, "and is not rehashed again"


def test_failed_sign_in_starts_no_session(auth, app, seeded):
    with writes(app) as written:
        assert auth.login(password="wrong-password-entirely").status_code == 400
    # at most two commits: the attempt reserved before its hash (on PostgreSQL through the pool;
    # on SQLite through the autocommit connection, not seen here), then its audit event
    assert "user_sessions" not in written.tables and written.commits <= 2
    with app.app_context():
        assert db.session.scalar(select(UserSession)) is None


def test_sign_in_by_email_case_insensitive(auth, seeded):
    assert auth.login(username="ALICE@example.com").status_code == 302


@pytest.mark.parametrize("username,password", [("alice", "wrong-password-entirely"), ("nobody", ALICE_PASSWORD)])
def test_same_message_for_unknown_user_and_wrong_password(auth, seeded, username, password):
    response = auth.login(username=username, password=password)
    assert response.status_code == 400
    assert SIGN_IN_FAILED in response.get_data(as_text=True).replace("&#39;", "'")


def test_post_without_csrf_token_is_refused(client, seeded, app):
    response = client.post("/account/login", data={"username": "alice", "password": ALICE_PASSWORD})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(UserSession)) is None


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 3, "LOCKOUT_SECONDS": 300}])
def test_repeated_failures_lock_the_account_without_revealing_it(auth, app, seeded):
    for _ in range(3):
        auth.login(password="wrong-password-entirely")
    locked = _user(app)
    assert locked.locked_until > 0
    response = auth.login()  # the right password while locked
    assert response.status_code == 400
    assert SIGN_IN_FAILED in response.get_data(as_text=True).replace("&#39;", "'")
    unknown = auth.login(username="nobody")
    assert unknown.get_data(as_text=True).count("incorrect") == response.get_data(as_text=True).count("incorrect")
    with app.app_context():
        events = [e.event for e in db.session.scalars(select(AuditEvent))]
    assert "account_locked" in events


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 3}])
def test_success_resets_the_failure_count(auth, app, seeded):
    auth.login(password="wrong-password-entirely")
    auth.login(password="wrong-password-entirely")
    assert _user(app).failed_attempts == 2
    assert auth.login().status_code == 302
    assert _user(app).failed_attempts == 0


def test_session_cookie_flags_and_new_session_on_sign_in(client, auth, seeded):
    client.get("/account/login")
    before = client.get_cookie("idsrv.session")
    response = auth.login(remember=True)
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("idsrv.session="))
    assert "HttpOnly" in session_cookie and "Secure" in session_cookie and "SameSite=Lax" in session_cookie
    remember = next(c for c in cookies if c.startswith("idsrv.remember="))
    assert "HttpOnly" in remember and "Secure" in remember
    after = client.get_cookie("idsrv.session")
    assert before is None or before.value != after.value


def test_remember_cookie_restores_the_session(client, auth, app, seeded):
    auth.login(remember=True)
    client.delete_cookie("idsrv.session")
    assert client.get("/diagnostics").status_code == 200


def test_without_remember_a_browser_restart_signs_out(client, auth, seeded):
    auth.login()
    client.delete_cookie("idsrv.session")
    assert client.get("/diagnostics").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/", "/\\evil.example.com", "javascript:alert(1)"])
def test_return_url_is_followed_only_when_local(auth, seeded, target):
    response = auth.login(return_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_local_return_url_is_followed(auth, seeded):
    response = auth.login(return_url="/diagnostics")
    assert response.headers["Location"] == "/diagnostics"


def test_login_hint_prefills_username(client, seeded):
    return_url = "/connect/authorize?client_id=spa&login_hint=alice%40example.com"
    html = client.get("/account/login?returnUrl=" + quote(return_url)).get_data(as_text=True)
    assert 'value="alice@example.com"' in html
    assert "Single-Page App" in html


def test_logout_get_asks_and_post_signs_out_and_revokes_session(client, auth, app, seeded):
    auth.login()
    page = client.get("/account/logout")
    assert page.status_code == 200 and client.get("/diagnostics").status_code == 200
    response = client.post("/account/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert response.status_code == 200
    assert client.get("/diagnostics").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession)).revoked_at is not None


def test_revoked_session_cookie_is_useless(client, auth, app, seeded):
    auth.login()
    with app.app_context():
        db.session.execute(UserSession.__table__.update().values(revoked_at=1))
        db.session.commit()
    assert client.get("/diagnostics").status_code == 302


def test_diagnostics_shows_session_claims(client, auth, app, seeded):
    auth.login()
    html = client.get("/diagnostics").get_data(as_text=True)
    assert _user(app).subject in html
    assert "auth_time" in html


def test_password_page_needs_a_fresh_sign_in_after_remember_me(client, auth, seeded):
    auth.login(remember=True)
    assert client.get("/account/password").status_code == 200
    client.delete_cookie("idsrv.session")
    response = client.get("/account/password")
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login")
    assert client.get("/diagnostics").status_code == 200  # still signed in, just not freshly


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_SENSITIVE": "3 per minute",
                                         "RATELIMIT_STORAGE_URI": "memory://"}])
def test_sign_in_posts_are_rate_limited_per_ip(client, auth, seeded):
    statuses = [auth.login(password="wrong-password-entirely").status_code for _ in range(4)]
    assert statuses[:3] == [400, 400, 400] and statuses[3] == 429
    limited = auth.login()
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert client.get("/account/login").status_code == 200  # GETs are not counted
