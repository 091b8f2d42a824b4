"""Review: a code's redemption against what ends its code or its session meanwhile. The
redemption reads the code, then spends it in one statement (on PostgreSQL with its first refresh
token); a sign-out, "Sign out everywhere else" or a password change commits while that statement
waits at a lock (the user's row, held here from a second connection, as an address change holds
it) or between the read and the statement (a hook on the redemption's read of the code's user,
tests/races.py's way). Never by timing: the waits are those PostgreSQL reports
(pg_stat_activity). The outcome must be one the two, run one after the other, would have given."""

import threading
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions
from app import create_app
from conftest import ALICE_PASSWORD, HttpsClient, close_connections, csrf_token, make_config
from identity.extensions import db
from identity.models import AuditEvent, AuthorizationCode, RefreshToken, UserSession
from identity.services import issued_grants
from races import amid_the_first_unless_queued, in_thread, mobile_code, other_workers, wait_until
from test_elsewhere_review import live_families, new_browser
from test_localapi_support import CHEAP_ARGON2
from test_sessions_devices import browser, page_entries

NEW_PASSWORD = "cobalt-meadow-lantern-8135"


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


@contextmanager
def phones_worker(database_uri, statement: str):
    """The server worker the phone's app redeems on. "one statement": with the client and the
    signing keys kept a few seconds, as in production between reloads, the redemption holds no
    session transaction, and a code and its refresh token are one statement (store.consume_code);
    "a transaction": with no such cache, two statements in the session's transaction."""
    overrides = {"CLIENT_CACHE_SECONDS": 5, "SIGNING_KEY_RELOAD_SECONDS": 5} if statement == "one statement" else {}
    worker = create_app(make_config(database_uri, **overrides))
    worker.test_client_class = HttpsClient
    try:
        yield worker
    finally:
        close_connections(worker)


@contextmanager
def phone_and_its_worker(app, database_uri, statement: str):
    """PostgreSQL only (SQLite's one write lock serialises a redemption and anything it could
    race): the phone's browser signed in, the worker its app redeems on with its caches filled
    (one code redeemed), and a fresh code of that browser's: (phone, worker, the code's form)."""
    if not database_uri.startswith("postgresql"):
        pytest.skip("SQLite's one write lock serialises the two")
    phone = new_browser(app)
    with phones_worker(database_uri, statement) as phones_app:
        warm_up = mobile_code(phone, "openid")  # the worker's caches filled
        assert OAuthActions(phones_app.test_client()).token("mobile-pkce", **warm_up).status_code == 200
        yield phone, phones_app, mobile_code(phone, "openid offline_access")


def _dsn(app) -> str:
    with app.app_context():
        return db.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")


@contextmanager
def users_row_held(app, username: str = "alice"):
    """The user's row locked FOR UPDATE (as an address change locks it) from a connection of its
    own, until the block ends: a refresh token's insert for the user (its foreign key) waits."""
    with psycopg.connect(_dsn(app)) as holder:
        holder.execute("SELECT id FROM users WHERE username = %s FOR UPDATE", (username,))
        try:
            yield
        finally:
            holder.rollback()


def _lock_waits(app) -> list[str]:
    """The statements of this database waiting for a lock now (PostgreSQL)."""
    with psycopg.connect(_dsn(app), autocommit=True) as conn:
        return [query for (query,) in conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")]


def _waiting(app, *parts: str) -> bool:
    """Whether a statement naming each of `parts` waits for a lock."""
    return any(all(part in query for part in parts) for query in _lock_waits(app))


def _done_or_waiting(app, thread: threading.Thread, waiters: int) -> bool:
    return not thread.is_alive() or len(_lock_waits(app)) >= waiters


def _session_ended(app, public_sid: str) -> bool:
    """Whether the session's end is committed."""
    with app.app_context():
        revoked = db.session.scalar(select(UserSession.revoked_at).where(UserSession.public_sid == public_sid))
        db.session.rollback()
    return revoked is not None


def _last_code(app) -> AuthorizationCode:
    with app.app_context():
        code = db.session.scalar(select(AuthorizationCode).order_by(AuthorizationCode.id.desc()))
        db.session.expunge(code)
        db.session.rollback()
    return code


def refused_for_an_ended_session(app, answer) -> None:
    """The redemption was refused as one whose browser session ended, and the phone's app holds no
    refresh token."""
    body = answer.get_json()
    assert (answer.status_code, body.get("error"), body.get("error_description")) == (
        400, "invalid_grant", "the browser session that minted the code has ended"), body
    with app.app_context():
        assert db.session.scalars(select(RefreshToken.id).where(RefreshToken.client_id == "mobile-pkce")).all() == []
        db.session.rollback()


@pytest.mark.parametrize("statement", ["one statement", "a transaction"])
@pytest.mark.parametrize("ending", ["sign_out", "everywhere_else"])
def test_a_redemption_under_way_as_its_session_ends_is_not_left_behind_by_the_end(
        app, flow_clients, client, database_uri, ending, statement):
    """PostgreSQL: the phone's app redeems its code while alice's row is locked (an address change
    in flight): the redemption's one statement checked the code's session, spent the code and
    waited at her row to store the refresh token. Meanwhile she signed out in the phone's browser,
    or chose "Sign out everywhere else" on her computer, and that committed at once: the
    redemption then committed tokens and a refresh token for a session that had ended before them
    (the app's logout notice came before its tokens), and after "Sign out everywhere else" the
    grant was in neither of its listings and kept working for the refresh token's whole lifetime.
    The end now waits for the redemption under way, and comes after it, as if a moment later."""
    results: dict = {}
    with phone_and_its_worker(app, database_uri, statement) as (phone, phones_app, form):
        session_id = _last_code(app).session_id
        here = browser(app)
        page = here.get("/account/sessions").get_data(as_text=True)
        this_browser = page_entries(page)[0]
        with users_row_held(app):
            redeeming = in_thread(results, "redeemed",
                                  lambda: OAuthActions(phones_app.test_client()).token("mobile-pkce", **form))
            at_the_users_row = "WITH consumed" if statement == "one statement" else "INSERT INTO refresh_tokens"
            wait_until(lambda: not redeeming.is_alive() or _waiting(app, at_the_users_row), timeout=60)
            assert redeeming.is_alive(), results  # under way, at the user's row
            if ending == "sign_out":
                ending_thread = in_thread(results, "ended", lambda: AuthActions(phone).logout())
            else:
                ending_thread = in_thread(results, "ended", lambda: here.post(
                    "/account/sessions", data={"csrf_token": csrf_token(page), "scope": "others"}))
            wait_until(lambda: _done_or_waiting(app, ending_thread, 2), timeout=60)
            ended_before_the_grant = _session_ended(app, session_id)
        redeeming.join(60)
        ending_thread.join(60)
    assert results["ended"].status_code in (200, 302), results["ended"]
    redeemed = results["redeemed"]
    issued = redeemed.status_code == 200
    # one after the other: ended first, the code issues nothing; redeemed first, the end follows it
    assert not (ended_before_the_grant and issued), (redeemed.status_code, redeemed.get_json())
    assert _session_ended(app, session_id)
    if ending == "everywhere_else":
        assert page_entries(here.get("/account/sessions").get_data(as_text=True)) == [this_browser]
        assert live_families(app) == set()
        if issued:
            refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token",
                                                   refresh_token=redeemed.get_json()["refresh_token"])
            assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("statement", ["one statement", "a transaction"])
def test_a_redemption_meeting_a_password_change_at_its_code_waits_for_it(app, flow_clients, database_uri, statement):
    """PostgreSQL: alice changes her password on her computer as the phone's app redeems a code
    the phone's browser minted, and the change has expired her codes but not yet ended her other
    sessions. The redemption must neither deadlock with the change (a redemption holding the
    code's session while it waits for the code, which the change holds while it waits for that
    session: one of the two aborted, answered 500) nor issue anything: it waits for the change,
    and is refused as a code whose session ended."""
    here = browser(app)
    results: dict = {}
    with phone_and_its_worker(app, database_uri, statement) as (phone, phones_app, form):
        page = here.get("/account/password").get_data(as_text=True)

        def redeem():
            results["redeemed"] = OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)

        with app.app_context(), amid_the_first_unless_queued(app, "UPDATE authorization_codes", redeem) as started:
            changed = here.post("/account/password", data={
                "csrf_token": csrf_token(page), "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD})
    assert started and changed.status_code in (200, 302), changed.status_code
    refused_for_an_ended_session(app, results["redeemed"])


@pytest.mark.parametrize("statement", ["one statement", "a transaction"])
def test_a_redemption_that_meets_its_sessions_end_under_way_waits_and_is_refused(app, flow_clients, database_uri,
                                                                                 statement):
    """PostgreSQL: the phone's session is being ended (its row written, not yet committed) as the
    phone's app redeems the code it minted. The redemption's statement began before that end
    committed, so its snapshot shows the session live: it waits for the end (the lock that keeps
    an end from passing a redemption under way) and must then see it, refusing the code as one
    whose session ended, not issue tokens after the end with the lock it took too late."""
    results: dict = {}
    with phone_and_its_worker(app, database_uri, statement) as (phone, phones_app, form):
        session_id = _last_code(app).session_id
        with psycopg.connect(_dsn(app)) as ending:
            ending.execute("UPDATE user_sessions SET revoked_at = extract(epoch FROM now())::bigint "
                           "WHERE public_sid = %s", (session_id,))
            redeeming = in_thread(results, "redeemed",
                                  lambda: OAuthActions(phones_app.test_client()).token("mobile-pkce", **form))
            wait_until(lambda: not redeeming.is_alive() or _waiting(app, "user_sessions", "FOR SHARE"), timeout=60)
            ending.commit()
        redeeming.join(60)
    refused_for_an_ended_session(app, results["redeemed"])


@pytest.mark.parametrize("changers_clock_ahead", [0, 5])
def test_a_redemption_that_loses_to_a_password_change_is_not_called_a_replay(app, flow_clients, client, database_uri,
                                                                           monkeypatch, changers_clock_ahead):
    """alice changes her password in the phone's browser (which stays signed in) while the phone's
    app redeems the code that browser had just minted: the change, committed between the
    redemption's read of the code and its spending, ended the code by expiring it. The redemption
    told the app "authorization code was already used" (a code never used), and recorded it as a
    replay (`token_revoked`, reason `authorization_code_replayed`, a replay counted for the app).
    It is answered as the expired code it is, and records nothing.

    With the changing instance's clock a few seconds ahead of the redeeming one's (instances may be
    CLOCK_DIFFERENCE_ALLOWED_SECONDS apart), the change set the code's expiry to its own now minus
    a second, still ahead of the redeeming instance's now: the code passed the consuming
    statement's `expires_at >= stamp`, and the app got tokens, its refresh token committed after
    the change had revoked hers (and kept working, its rotations carrying the new password's
    version). It is refused the same way."""
    phone = new_browser(app)
    form = mobile_code(phone, "openid offline_access")
    reading, changed, real_now = issued_grants.user_of_grant, [], issued_grants.now

    def password_changed_after_the_read(grant):
        if not changed:
            with monkeypatch.context() as changers_clock:
                changers_clock.setattr(issued_grants, "now", lambda: real_now() + changers_clock_ahead)
                page = phone.get("/account/password").get_data(as_text=True)
                changed.append(phone.post("/account/password", data={
                    "csrf_token": csrf_token(page), "current_password": ALICE_PASSWORD,
                    "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}))
        return reading(grant)

    monkeypatch.setattr(issued_grants, "user_of_grant", password_changed_after_the_read)
    with other_workers(database_uri) as (phones_app,):
        redeemed = OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)
    assert changed and changed[0].status_code in (200, 302), changed
    assert phone.get("/account/sessions").status_code == 200  # the change kept the phone's browser signed in
    body = redeemed.get_json()
    assert (redeemed.status_code, body.get("error"), body.get("error_description")) == (
        400, "invalid_grant", "Invalid 'code' in request."), body
    again = OAuthActions(client).token("mobile-pkce", **form)  # read expired: the same answer
    assert (again.status_code, again.get_json()) == (400, body), again.get_json()
    with app.app_context():
        revoked = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        assert [d for d in revoked if d.get("reason") == "authorization_code_replayed"] == []
        assert db.session.scalars(select(RefreshToken.id).where(RefreshToken.client_id == "mobile-pkce")).all() == []
        db.session.rollback()


@pytest.mark.parametrize("statement", ["one statement", "a transaction"])
def test_a_redemption_as_its_browser_signs_in_again_is_not_refused(app, flow_clients, database_uri, statement):
    """PostgreSQL: alice signs in again in the phone's browser (the app asked for a fresh sign-in)
    as the phone's app redeems the code that browser had minted: the new session takes over the
    old one's public id (continue_session), which the code names. The redemption's statement,
    waiting for the old session's row, found it revoked under another id, and the new session not
    yet holding the code's: the code, whose session lives on, was refused. It redeems."""
    results: dict = {}
    with phone_and_its_worker(app, database_uri, statement) as (phone, phones_app, form):
        session_id = _last_code(app).session_id

        def redeem():
            results["redeemed"] = OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)

        with app.app_context(), amid_the_first_unless_queued(app, "public_sid=", redeem) as started:
            assert AuthActions(phone).login().status_code == 302
    assert started
    redeemed = results["redeemed"]
    assert redeemed.status_code == 200, redeemed.get_json()
    assert not _session_ended(app, session_id)  # the new sign-in holds the code's session id
    with app.app_context():
        assert db.session.scalars(select(RefreshToken.session_id).where(
            RefreshToken.client_id == "mobile-pkce")).all() == [session_id]
        db.session.rollback()
