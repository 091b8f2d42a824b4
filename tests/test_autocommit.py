"""The per-process autocommit connection of the hot paths: fresh reads, reconnects, commit mode."""

import os

import pytest
from sqlalchemy import func, select, text, update

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from identity.extensions import db
from identity.models import AuditEvent, AuthorizationCode, RefreshToken, User, UserSession
from identity.store import connection as connection_module
from identity.store import lockout as lockout_rows
from identity.store.connection import autocommit_connection
from statements import statements



def alice_name(app) -> str | None:
    with app.app_context():
        row = autocommit_connection().first(select(User.name).where(User.username == "alice"), {})
        return row[0] if row else None


def test_reads_see_what_the_session_committed_at_once(app, seeded):
    assert alice_name(app) == "Alice Example"
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(name="Alice Renamed"))
        db.session.commit()
    assert alice_name(app) == "Alice Renamed"


def test_a_closed_connection_is_replaced_on_the_next_read(app, seeded):
    assert alice_name(app) == "Alice Example"
    with app.app_context():
        connection = autocommit_connection()
        connection._connection.close()  # as if the database had dropped it
        executed = connection.executed
    assert alice_name(app) == "Alice Example"
    assert connection.executed == executed + 1


def test_no_transaction_is_left_open_between_statements(app, seeded):
    alice_name(app)
    with app.app_context():
        raw = autocommit_connection()._connection
        if autocommit_connection().is_sqlite:
            assert raw.in_transaction is False
        else:
            assert raw.info.transaction_status.name == "IDLE"


@pytest.mark.parametrize("app_config", [{}, {"ROTATION_SYNCHRONOUS_COMMIT": True}], ids=["default", "synchronous"])
def test_rotation_commit_mode_follows_the_setting(app, app_config):
    """Off by default; with the setting on, whatever the database's own setting is (as for the session)."""
    with app.app_context():
        connection = autocommit_connection()
        if connection.is_sqlite:
            pytest.skip("PostgreSQL only: SQLite's durability is the database's synchronous=NORMAL")
        database_setting = db.session.scalar(text("SELECT current_setting('synchronous_commit')"))
        expected = database_setting if app_config.get("ROTATION_SYNCHRONOUS_COMMIT") else "off"
        # in a write's transaction, where its commit happens (the setting is SET LOCAL: a pooler's
        # server connection must not keep it for other clients; test_pooler_review.py)
        assert connection.write_first(text("SELECT current_setting('synchronous_commit')"), {})[0] == expected
        assert connection.first(text("SELECT current_setting('synchronous_commit')"), {})[0] == database_setting


@pytest.mark.parametrize("app_config", [{}, {"ROTATION_SYNCHRONOUS_COMMIT": True}], ids=["default", "synchronous"])
def test_a_sign_in_attempt_is_counted_in_one_statement_committed_as_the_session_commits(app, seeded, app_config):
    """The attempt counter (lockout.py) is a security write: committed as durably as the session's
    writes whatever ROTATION_SYNCHRONOUS_COMMIT says, and one statement (a pooled transaction
    was a ping, a BEGIN, the UPDATE and a COMMIT)."""
    with app.app_context():
        postgresql_only(autocommit_connection())
        database_setting = db.session.scalar(text("SELECT current_setting('synchronous_commit')"))
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        alice_id, before = alice.id, alice.failed_attempts
        db.session.rollback()
    with statements(app) as run, app.app_context():
        assert lockout_rows.record_sign_in_attempt(alice_id, stamp=1, limit=10, lock_until=2) == (before + 1, 0)
    assert (run.pooled, run.autocommit) == ([], 1)
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.id == alice_id)) == before + 1
        connection = autocommit_connection()
        durable = connection._durable_sibling or connection
        assert durable.first(text("SELECT current_setting('synchronous_commit')"), {})[0] == database_setting
        assert (durable is connection) == bool(app_config.get("ROTATION_SYNCHRONOUS_COMMIT"))


# --- PostgreSQL: a connection the server ends, failed statements, parameters -------------------


def postgresql_only(connection):
    if connection.is_sqlite:
        pytest.skip("PostgreSQL only")


def test_a_connection_the_server_ends_is_replaced(app, seeded):
    with app.app_context():
        connection = autocommit_connection()
        postgresql_only(connection)
    assert alice_name(app) == "Alice Example"
    with app.app_context():
        backend = connection._connection.info.backend_pid
        assert db.session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}) is True
        db.session.commit()
    assert alice_name(app) == "Alice Example", "the read is retried on a new connection"
    with app.app_context():
        assert connection._connection.info.backend_pid != backend


def test_failed_statements_raise_sqlalchemy_errors_and_leave_the_connection_usable(app, seeded):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        connection = autocommit_connection()
        postgresql_only(connection)
        columns = ("subject, username, username_normalized, email, email_normalized, name, password_hash, "
                   "password_version, password_changed_at, failed_attempts, locked_until, created_at")
        duplicate = text(f"INSERT INTO users ({columns}) SELECT {columns} FROM users WHERE username = :username RETURNING id")
        with pytest.raises(IntegrityError):
            connection.write_first(duplicate, {"username": "alice"})
        assert db.session.scalar(text("SELECT count(*) FROM users WHERE username = 'alice'")) == 1
    assert alice_name(app) == "Alice Example"


def sqlite_only(connection):
    if not connection.is_sqlite:
        pytest.skip("SQLite only")


class FailingAt:
    """The autocommit connection's sqlite3 connection, whose next `sql` (COMMIT, ROLLBACK) fails
    as the driver fails on a disk that is full: for real, under a file-size limit of 0 that
    holds for that statement alone (SQLite writes a transaction's WAL frames at COMMIT), or, for
    a ROLLBACK, which writes nothing, with the driver's own error."""

    def __init__(self, raw, sql: str):
        self.raw, self.sql = raw, sql

    def execute(self, sql, *args):
        if sql != self.sql:
            return self.raw.execute(sql, *args)
        if sql == "ROLLBACK":
            import sqlite3

            raise sqlite3.OperationalError("disk I/O error")
        import resource
        import signal

        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, limit[1]))
        try:
            return self.raw.execute(sql, *args)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)
            signal.signal(signal.SIGXFSZ, handler)

    def __getattr__(self, name):
        return getattr(self.raw, name)


def test_a_sqlite_write_whose_commit_fails_is_answered_503_and_leaves_the_connection_usable(app, seeded, client):
    """A full disk at COMMIT (the sign-in's writes after the hash) is SQLAlchemy's error, which
    the app answers with 503, not the driver's bare error (a 500); the next write goes through."""
    with app.app_context():
        connection = autocommit_connection()
        sqlite_only(connection)
        connection.first(select(User.id), {})  # opened
        raw = connection._connection
        connection._connection = FailingAt(raw, "COMMIT")
    assert AuthActions(client).login().status_code == 503
    with app.app_context():
        assert not raw.in_transaction
        connection._connection = raw
    assert AuthActions(client).login().status_code == 302


def test_a_failing_rollback_does_not_hide_the_error_that_caused_it(app, seeded):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        connection = autocommit_connection()
        sqlite_only(connection)
        connection.first(select(User.id), {})  # opened
        connection._connection = FailingAt(connection._connection, "ROLLBACK")
        duplicate = text("INSERT INTO users SELECT * FROM users WHERE username = :username")
        with pytest.raises(IntegrityError):
            with connection.sqlite_write() as run:
                run(duplicate, {"username": "alice"})
        assert connection._connection is None  # dropped: closing it ended the transaction
    assert alice_name(app) == "Alice Example"


def test_parameters_of_several_types_and_literal_percent_signs(app, seeded):
    import datetime

    with app.app_context():
        connection = autocommit_connection()
        postgresql_only(connection)
        moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        row = connection.first(text("SELECT CAST(:moment AS timestamptz) = '2026-01-02 03:04:05+00', "
                                    "'100%' LIKE '%\\%' ESCAPE '\\'"), {"moment": moment})
        assert tuple(row) == (True, True)
        row = connection.first(text("SELECT CAST(:number AS integer) + 1, CAST(:word AS text) || '%'"),
                               {"number": 41, "word": "done"})
        assert tuple(row) == (42, "done%")


def _count_attempt(app, alice_id: int):
    with app.app_context():
        return lockout_rows.record_sign_in_attempt(alice_id, stamp=1, limit=100, lock_until=2)


def _terminate(app, pid: int) -> None:
    with app.app_context():
        assert db.session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}) is True
        db.session.commit()


@pytest.mark.parametrize("app_config", [{"ROTATION_SYNCHRONOUS_COMMIT": False}])
def test_the_durable_connection_is_replaced_with_the_first_one(app, seeded, app_config):
    """A write is never retried, so a durable connection the server ended must not be used: once a
    read finds the database gone and replaces the first connection, the second goes too."""
    with app.app_context():
        connection = autocommit_connection()
        postgresql_only(connection)
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    assert alice_name(app) == "Alice Example"
    assert _count_attempt(app, alice_id)[0] == 1
    durable = connection._durable_sibling
    first_pid, durable_pid = connection._connection.info.backend_pid, durable._connection.info.backend_pid
    _terminate(app, first_pid)
    _terminate(app, durable_pid)
    assert alice_name(app) == "Alice Example", "the read is retried on a new connection"
    assert _count_attempt(app, alice_id)[0] == 2, "and the write goes on a new one too"
    assert durable._connection.info.backend_pid != durable_pid


@pytest.mark.parametrize("app_config", [{"ROTATION_SYNCHRONOUS_COMMIT": False}])
def test_an_idle_durable_connection_is_pinged_before_a_write(app, seeded, app_config, monkeypatch):
    with app.app_context():
        connection = autocommit_connection()
        postgresql_only(connection)
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    assert _count_attempt(app, alice_id)[0] == 1
    durable_pid = connection._durable_sibling._connection.info.backend_pid
    _terminate(app, durable_pid)
    monkeypatch.setattr(connection_module, "DURABLE_PING_AFTER_IDLE_SECONDS", 0.0)  # as after a second idle
    assert _count_attempt(app, alice_id)[0] == 2
    assert connection._durable_sibling._connection.info.backend_pid != durable_pid


def test_a_sign_in_writes_on_the_durable_connection_when_the_session_holds_nothing(app, seeded, client):
    """write(): with no transaction of the session's open, nothing of its waits to commit with the
    sign-in's writes, so they go as one transaction on the durable connection (a pooled one cost a
    ping, a BEGIN and a COMMIT besides): the attempt, its settling, the audit event and the
    browser session; all of them committed."""
    with app.app_context():
        postgresql_only(autocommit_connection())
    with statements(app) as run:
        assert AuthActions(client).login().status_code == 302
    assert [sql.split(None, 1)[0] for sql in run.pooled if sql.split(None, 1)[0] in ("INSERT", "UPDATE")] == []
    assert run.autocommit >= 4
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert alice.failed_attempts == 0
        assert db.session.scalar(select(UserSession.user_id).where(UserSession.user_id == alice.id)) == alice.id
        assert db.session.scalar(select(AuditEvent.event).where(AuditEvent.user_id == alice.id,
                                                                  AuditEvent.event == "sign_in")) == "sign_in"


# --- PostgreSQL: several writes in one round trip (write_all) -----------------------------------


class RoundTrips:
    """The times a psycopg connection waited for the server inside the block: the Sync and Query
    messages it sent, read from libpq's protocol trace."""

    def __init__(self, connection, tmp_path):
        self.connection, self.path, self.count = connection, tmp_path / "trace.txt", None

    def __enter__(self):
        import psycopg

        self.file = open(self.path, "w")  # noqa: SIM115
        self.connection.pgconn.trace(self.file.fileno())
        self.connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        return self

    def __exit__(self, *exc):
        self.connection.pgconn.untrace()
        self.file.close()
        sent = [line.split("\t") for line in self.path.read_text().splitlines() if line.startswith("F\t")]
        self.count = sum(1 for fields in sent if fields[2].strip() in ("Sync", "Query"))


def _durable_in_use(app, alice_id, monkeypatch):
    """The durable connection, open and just used, and not pinged for being idle before the next
    write however long the test takes to get there (a loaded machine took over a second once)."""
    monkeypatch.setattr(connection_module, "DURABLE_PING_AFTER_IDLE_SECONDS", 3600)
    assert _count_attempt(app, alice_id)[0] >= 1
    with app.app_context():
        connection = autocommit_connection()
        return connection.durable()._connection


def test_a_sign_ins_writes_after_the_hash_are_one_round_trip(app, seeded, client, tmp_path, monkeypatch):
    """The attempt is counted in one round trip before the hash; after it, the settling, the audit
    event and the browser session go as one transaction in one more (BEGIN, three statements and
    COMMIT were five)."""
    with app.app_context():
        postgresql_only(autocommit_connection())
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    with RoundTrips(_durable_in_use(app, alice_id, monkeypatch), tmp_path) as trips, statements(app) as run:
        assert AuthActions(client).login().status_code == 302
    assert trips.count == 2
    assert run.autocommit == 4  # the user and the attempt; then the settling, the audit event, the session
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.id == alice_id)) == 0
        assert db.session.scalar(select(UserSession.user_id).where(UserSession.user_id == alice_id)) == alice_id


def test_a_sign_in_reads_its_user_in_the_statement_that_counts_its_attempt(app, seeded, client):
    """Before the hash, one statement both reads the user and reserves the attempt (it was a read,
    then the reservation): one statement, and on PostgreSQL one round trip, less per sign-in."""
    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    with statements(app) as run:
        assert AuthActions(client).login().status_code == 302
    assert run.autocommit == 4  # the user and the attempt; then the settling, the audit event, the session
    assert run.pooled == []
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.id == alice_id)) == 0
        assert db.session.scalar(select(UserSession.user_id).where(UserSession.user_id == alice_id)) == alice_id
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice_id)).all()
    assert events.count("sign_in") == 1 and "sign_in_failed" not in events


def _code(oauth, scope: str) -> tuple[dict, str]:
    """A code for mobile-pkce (signed in already): the token request's form, and the code."""
    verifier, challenge = pkce_pair()
    redirect_uri = "com.example.app:/callback"
    response = oauth.authorize(client_id="mobile-pkce", redirect_uri=redirect_uri, scope=scope,
                               code_challenge=challenge, code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]
    return dict(grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=redirect_uri), code


# the defaults: a worker reuses the client's snapshot and its signing keys for a few seconds
@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 5, "SIGNING_KEY_RELOAD_SECONDS": 5}])
def test_a_code_and_its_refresh_token_are_one_round_trip(app, seeded, client, tmp_path, monkeypatch):
    """Redeeming a code that brings a refresh token consumes the code and stores the token in one
    statement on the durable connection, where BEGIN, the two statements and COMMIT were four
    round trips (when no session transaction is open, writes.py: here, once the worker holds the
    client's snapshot and the signing keys, as it does between reloads)."""
    with app.app_context():
        postgresql_only(autocommit_connection())
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    warm_up, _ = _code(oauth, "openid")
    assert oauth.token("mobile-pkce", **warm_up).status_code == 200
    redeem, code = _code(oauth, "openid offline_access")
    with RoundTrips(_durable_in_use(app, alice_id, monkeypatch), tmp_path) as trips:
        token = oauth.token("mobile-pkce", **redeem)
    assert token.status_code == 200, token.get_data(as_text=True)
    assert trips.count == 1
    with app.app_context():
        code_row = db.session.scalars(select(AuthorizationCode).where(
            AuthorizationCode.user_id == alice_id, AuthorizationCode.scope == "openid offline_access")).one()
        refresh = db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == alice_id)).one()
        assert code_row.consumed_at and code_row.issued_jti
        assert (refresh.family_id, refresh.client_id, refresh.access_token_jti, refresh.scope) == (
            code_row.family_id, "mobile-pkce", code_row.issued_jti, "openid offline_access")
        assert refresh.consumed_at is None and refresh.revoked_at is None and refresh.expires_at > refresh.issued_at
        db.session.rollback()
    # the refresh token works, and the code does not work twice (nor brings a second token)
    assert oauth.token("mobile-pkce", grant_type="refresh_token",
                       refresh_token=token.get_json()["refresh_token"]).status_code == 200
    assert oauth.token("mobile-pkce", **redeem).status_code == 400
    with app.app_context():
        families = db.session.scalars(select(RefreshToken.family_id).where(RefreshToken.user_id == alice_id)).all()
    assert len(families) == 2 and len(set(families)) == 1  # the first token and its rotation


def test_several_writes_fail_together_and_leave_the_connection_usable(app, seeded, tmp_path, monkeypatch):
    """If one statement of write_all fails, the ones before it are not committed; the error is
    SQLAlchemy's, and the connection serves the next statement."""
    from sqlalchemy.exc import IntegrityError

    from identity.store.writes import write

    with app.app_context():
        postgresql_only(autocommit_connection())
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    durable = _durable_in_use(app, alice_id, monkeypatch)
    rename = (text("UPDATE users SET name = :name WHERE id = :id"), {"name": "Renamed", "id": alice_id})
    columns = ("subject, username, username_normalized, email, email_normalized, name, password_hash, "
               "password_version, password_changed_at, failed_attempts, locked_until, created_at")
    duplicate = (text(f"INSERT INTO users ({columns}) SELECT {columns} FROM users WHERE id = :id"), {"id": alice_id})
    with app.app_context(), RoundTrips(durable, tmp_path) as trips:
        with pytest.raises(IntegrityError):
            write(rename, duplicate, rename)
        assert durable.info.transaction_status.name == "IDLE"
    assert trips.count == 2  # the pipeline; the ROLLBACK of the transaction the error left open
    assert alice_name(app) == "Alice Example"
    with app.app_context():
        assert write(rename, (text("UPDATE users SET locked_until = 0 WHERE id = :id"), {"id": alice_id})) == [1, 1]
    assert alice_name(app) == "Renamed"


def test_several_writes_on_a_connection_the_server_ended_fail_once_then_go_on_a_new_one(app, seeded, monkeypatch):
    """A batch is never retried (it may have committed): on a connection the server ended it
    raises SQLAlchemy's error, and the next batch goes on a new connection."""
    from sqlalchemy.exc import DBAPIError

    from identity.store.writes import write

    with app.app_context():
        postgresql_only(autocommit_connection())
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    durable = _durable_in_use(app, alice_id, monkeypatch)
    _terminate(app, durable.info.backend_pid)
    rename = (text("UPDATE users SET name = :name WHERE id = :id"), {"name": "Renamed", "id": alice_id})
    unlock = (text("UPDATE users SET locked_until = 0 WHERE id = :id"), {"id": alice_id})
    with app.app_context():
        with pytest.raises(DBAPIError):
            write(rename, unlock)
        assert alice_name(app) == "Alice Example"
        assert write(rename, unlock) == [1, 1]
        assert autocommit_connection().durable()._connection.info.backend_pid != durable.info.backend_pid
    assert alice_name(app) == "Renamed"


_ON_POSTGRESQL = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "").startswith("postgresql")


@pytest.mark.parametrize("app_config", [
    # PostgreSQL: the security writes on this same connection (with rotations committed durably too)
    {"ROTATION_SYNCHRONOUS_COMMIT": True} if _ON_POSTGRESQL else {"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 2}}}])
def test_a_read_while_another_thread_waits_to_write_does_not_wait_for_it(app, seeded, app_config):
    """One process, two threads (a request, and the mail sender thread auditing a mail it sent; or
    two requests under granian's threads). The request's transaction holds the write lock (SQLite's
    one lock; on PostgreSQL a user's row, as lock_user_row takes it) and reads on the autocommit
    connection (has the user an app?). The other thread had taken the autocommit connection and
    waited on it for that lock, so the read waited for the writer, which waited for the request:
    both stood still for the busy timeout (30 s by default; CI saw a new set of recovery codes
    answered after more than 30 s), then the writer failed and its audit event was lost. The read
    now goes on without the connection the writer holds, and the writer writes once the request's
    transaction ends. (Judged by what is written, not by the clock.)"""
    import threading

    from identity.services import audit, mfa
    from identity.store import accounts as account_rows
    from identity.store.writes import write

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        connection = autocommit_connection()
        connection.first(select(User.id).where(User.id == user_id), {})  # opened (busy timeout read)
        account_rows.lock_user_row(user_id)  # the request's transaction holds the write lock
        outcome: list = []

        def audit_from_another_thread():
            with app.app_context():
                try:
                    # an audit event, and (for PostgreSQL's row lock) the user's row
                    outcome.append(write(audit.event_write("mail_sent", user_id=user_id, detail={"template": "probe"}),
                                         (update(User.__table__).where(User.__table__.c.id == user_id)
                                          .values(name="Alice Renamed"), {})))
                except Exception as err:  # the outcome the test reports
                    outcome.append(err)

        writer = threading.Thread(target=audit_from_another_thread)
        writer.start()
        while not connection._lock.locked() and writer.is_alive():  # the writer holds the connection
            pass
        read = mfa.has_totp(user_id)  # the request's read on the autocommit connection
        db.session.rollback()  # the request's transaction ends
        writer.join(60)
        assert not writer.is_alive()
        assert read is False
        assert outcome == [[1, 1]], f"the other thread's write: {outcome}"
        written = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "mail_sent"))
        assert written == 1
        assert db.session.scalar(select(User.name).where(User.id == user_id)) == "Alice Renamed"
