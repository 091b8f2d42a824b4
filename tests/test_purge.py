"""Purging: exactly the rows past their retention go, each kind; tombstones still needed stay;
the automatic purge of a serving worker removes at most its bound per pass."""

import hashlib
import logging
import os
from contextlib import contextmanager
import json
import time
import urllib.request

import pytest
from sqlalchemy import create_engine, func, select

from conftest import close_connections
from identity.clock import now
from identity.services import bearer_cache
from identity.extensions import db
from identity.models import (AccountToken, AuditEvent, AuthorizationCode, RefreshToken, RevokedAccessToken, StandaloneAccessToken, User,
                             UserSession)

DAY = 86400


def _code(tag: str, user_id: int, *, expires_at: int, consumed_at: int | None = None) -> AuthorizationCode:
    return AuthorizationCode(code_hash=hashlib.sha256(tag.encode()).hexdigest(), client_id="spa", user_id=user_id, session_id=None,
                             redirect_uri="http://127.0.0.1:8080/callback", response_type="code", scope="openid",
                             auth_time=expires_at - 300, created_at=expires_at - 300, expires_at=expires_at,
                             consumed_at=consumed_at, family_id=tag)


def _refresh(tag: str, user_id: int, *, expires_at: int, consumed_at=None, revoked_at=None) -> RefreshToken:
    return RefreshToken(token_hash=hashlib.sha256(tag.encode()).hexdigest(), family_id=tag, client_id="spa", user_id=user_id, scope="openid",
                        issued_at=expires_at - 30 * DAY, expires_at=expires_at, consumed_at=consumed_at,
                        revoked_at=revoked_at)


def _session(tag: str, user_id: int, *, created_at: int, last_seen_at: int, revoked_at=None) -> UserSession:
    return UserSession(sid="cookie-" + tag, public_sid="public-" + tag, user_id=user_id, auth_time=created_at,
                       created_at=created_at, last_seen_at=last_seen_at, revoked_at=revoked_at)


def _account_token(tag: str, user_id: int, *, expires_at: int, used_at: int | None = None) -> AccountToken:
    return AccountToken(token_hash=hashlib.sha256(tag.encode()).hexdigest(), purpose="password_reset", user_id=user_id,
                        email=tag, created_at=expires_at - 1800, expires_at=expires_at, used_at=used_at)


def _populate(app) -> dict[str, set[str]]:
    """One row of every case; returns the tags that must survive a full purge, by kind."""
    t = now()
    idle, absolute = app.config["SESSION_IDLE_SECONDS"], app.config["SESSION_ABSOLUTE_SECONDS"]
    leeway, skew = app.config["JWT_LEEWAY_SECONDS"], bearer_cache.CLOCK_DIFFERENCE_ALLOWED_SECONDS
    audit_days = app.config["AUDIT_RETENTION_DAYS"]
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.add_all([
            _code("code-live", alice, expires_at=t + 200),
            _code("code-tombstone", alice, expires_at=t - 100, consumed_at=t - 250),  # replays still caught
            _code("code-expired-unused", alice, expires_at=t - 100),  # kept with the tombstones: same rule
            _code("code-old", alice, expires_at=t - DAY - 10, consumed_at=t - DAY - 200),
            _code("code-old-unused", alice, expires_at=t - DAY - 10),
            _refresh("rt-live", alice, expires_at=t + DAY),
            _refresh("rt-rotated", alice, expires_at=t + DAY, consumed_at=t - 10),  # reuse detection needs it
            _refresh("rt-revoked", alice, expires_at=t + DAY, revoked_at=t - 10),
            _refresh("rt-expired", alice, expires_at=t - 10),
            _refresh("rt-expired-rotated", alice, expires_at=t - 10, consumed_at=t - DAY),
            RevokedAccessToken(jti="jti-live", expires_at=t + 600),
            RevokedAccessToken(jti="jti-in-leeway", expires_at=t - leeway + 5),  # still accepted with the leeway
            # ... by an instance whose clock is up to CLOCK_DIFFERENCE_ALLOWED_SECONDS behind this one
            RevokedAccessToken(jti="jti-behind", expires_at=t - leeway - 5),
            RevokedAccessToken(jti="jti-expired", expires_at=t - leeway - skew - 5),
            StandaloneAccessToken(jti="sat-live", user_id=alice, client_id="spa", expires_at=t + 600),
            StandaloneAccessToken(jti="sat-in-leeway", user_id=alice, client_id="spa", expires_at=t - leeway + 5),
            StandaloneAccessToken(jti="sat-behind", user_id=alice, client_id="spa", expires_at=t - leeway - 5),
            StandaloneAccessToken(jti="sat-expired", user_id=alice, client_id="spa", expires_at=t - leeway - skew - 5),
            _session("live", alice, created_at=t - 100, last_seen_at=t - 10),
            _session("revoked", alice, created_at=t - 100, last_seen_at=t - 10, revoked_at=t - 5),
            _session("idle", alice, created_at=t - idle - 100, last_seen_at=t - idle - 5),
            _session("too-old", alice, created_at=t - absolute - 5, last_seen_at=t - 10),
            _account_token("at-live", alice, expires_at=t + 600),
            _account_token("at-expired", alice, expires_at=t - 60),  # still counted toward the hourly mail cap
            _account_token("at-used", alice, expires_at=t + 600, used_at=t - 10),
            _account_token("at-old", alice, expires_at=t - 3600 - 10),
            _account_token("at-old-used", alice, expires_at=t - 3600 - 10, used_at=t - 4000),
            AuditEvent(at=t - 10, event="recent", detail={}),
            AuditEvent(at=t - audit_days * DAY + 60, event="almost-old", detail={}),
            AuditEvent(at=t - audit_days * DAY - 60, event="old", detail={}),
        ])
        db.session.commit()
    return {
        "authorization_codes": {"code-live", "code-tombstone", "code-expired-unused"},
        "refresh_tokens": {"rt-live", "rt-rotated", "rt-revoked"},
        "revoked_access_tokens": {"jti-live", "jti-in-leeway", "jti-behind"},
        "standalone_access_tokens": {"sat-live", "sat-in-leeway", "sat-behind"},
        "user_sessions": {"live"},
        "account_tokens": {"at-live", "at-expired", "at-used"},
        "audit_events": {"recent", "almost-old"},
    }


def _left(app) -> dict[str, set[str]]:
    with app.app_context():
        left = {
            "authorization_codes": set(db.session.scalars(select(AuthorizationCode.family_id))),
            "refresh_tokens": set(db.session.scalars(select(RefreshToken.family_id))),
            "revoked_access_tokens": set(db.session.scalars(select(RevokedAccessToken.jti))),
            "standalone_access_tokens": set(db.session.scalars(select(StandaloneAccessToken.jti))),
            "user_sessions": {s.removeprefix("public-") for s in db.session.scalars(select(UserSession.public_sid))},
            "account_tokens": set(db.session.scalars(select(AccountToken.email))),
            "audit_events": set(db.session.scalars(select(AuditEvent.event))),
        }
        db.session.remove()
    return left


EXPECTED_COUNTS = {"authorization_codes": 2, "refresh_tokens": 2, "revoked_access_tokens": 1, "standalone_access_tokens": 1,
                   "user_sessions": 3, "session_clients": 0, "logout_deliveries": 0, "account_tokens": 2,
                   "audit_events": 1}


def test_purge_removes_exactly_what_is_past_retention(app, seeded):
    from identity.services.purge import purge

    keep = _populate(app)
    with app.app_context():
        # audit rows the seed wrote are recent: they stay
        seeded_events = set(db.session.scalars(select(AuditEvent.event)))
        removed = purge()
    keep["audit_events"] |= seeded_events - {"old"}
    assert removed == EXPECTED_COUNTS
    assert _left(app) == keep
    with app.app_context():
        assert purge() == dict.fromkeys(EXPECTED_COUNTS, 0)  # nothing more to do
    assert _left(app) == keep


# A lock every purge statement waits on, and a short bound on that wait: SQLite's busy timeout,
# PostgreSQL's lock_timeout (the production bound is statement_timeout, 30 s, or the busy timeout).
LOCK_WAIT = ({"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": "-c lock_timeout=300"}}}
             if os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "").startswith("postgresql")
             else {"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 0.3}}})


@contextmanager
def database_locked(app):
    """Hold what every purge statement needs: SQLite's write lock; on PostgreSQL every table."""
    with app.app_context():
        engine = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
        tables = [t.name for t in db.metadata.sorted_tables]
    connection = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        else:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        yield
    finally:
        connection.exec_driver_sql("ROLLBACK")
        connection.close()
        engine.dispose()


@pytest.mark.parametrize("app_config", [LOCK_WAIT])
def test_a_pass_ends_at_the_first_kind_the_database_refuses(app, seeded, caplog):
    """A locked or unavailable database fails each statement only after its timeout. A worker's
    pass (after a response) that went on through every kind held the worker, and the requests
    queued behind it, for that timeout nine times over (15 s with a 3 s busy timeout: the granian
    test of a request stuck on the database saw its /healthz time out behind it). The pass ends
    at the first failure, touches nothing, and the next one does the work."""
    from identity.services.purge import KINDS, purge_pass

    keep = _populate(app)
    before = _left(app)
    with caplog.at_level(logging.WARNING, logger="identity.purge"), database_locked(app):
        with app.app_context():
            removed = purge_pass()
            db.session.remove()
    assert removed == dict.fromkeys(KINDS, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "identity.purge"]
    assert len(warnings) == 1 and warnings[0].startswith(f"purge pass stopped at {KINDS[0]}: "), warnings
    assert _left(app) == before  # nothing half done

    caplog.clear()
    with app.app_context():
        assert purge_pass() == EXPECTED_COUNTS
    assert not [r for r in caplog.records if r.name == "identity.purge" and r.levelno >= logging.WARNING]
    keep["audit_events"] |= before["audit_events"] - {"old"}  # the seed's own events are recent
    assert _left(app) == keep


@pytest.mark.parametrize("app_config", [LOCK_WAIT])
def test_the_purge_command_fails_in_one_line_when_the_database_refuses(app, seeded, runner):
    """`flask purge` (from cron) must not look done when it is not: a kind the database refused
    is `Error: purge stopped at <kind> ...` and exit 1, not a traceback nor exit 0; run again, it
    does the work."""
    keep = _populate(app)
    before = _left(app)
    with database_locked(app):
        result = runner.invoke(args=["purge"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1, result.output
    # SQLite: the purge's first DELETE waits out the lock; PostgreSQL (every table locked): the schema check
    assert "purge stopped at authorization_codes" in result.output or "lock timeout" in result.output, result.output
    assert _left(app) == before
    again = runner.invoke(args=["purge", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == EXPECTED_COUNTS
    keep["audit_events"] |= (before["audit_events"] - {"old"}) | {"purged"}
    assert _left(app) == keep


def test_purge_command_prints_one_line_and_json(app, seeded, runner):
    keep = _populate(app)
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    for kind, count in EXPECTED_COUNTS.items():
        assert f"{kind} {count}" in lines[0]
    assert _left(app)["refresh_tokens"] == keep["refresh_tokens"]
    again = runner.invoke(args=["purge", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == dict.fromkeys(EXPECTED_COUNTS, 0)
    with app.app_context():  # the operator's purges are audited, with their counts
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "purged").order_by(AuditEvent.id)).all()
        assert [e.detail["removed"] for e in events] == [EXPECTED_COUNTS, dict.fromkeys(EXPECTED_COUNTS, 0)]


def test_purge_command_removes_more_than_one_batch(app, seeded, runner):
    t = now()
    with app.app_context():
        db.session.add_all([RevokedAccessToken(jti=f"old-{i}", expires_at=t - DAY) for i in range(7)])
        db.session.commit()
    app.config["PURGE_BATCH_SIZE"] = 3
    result = runner.invoke(args=["purge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["revoked_access_tokens"] == 7
    assert _left(app)["revoked_access_tokens"] == set()


def _count(app, model) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
        return n


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("app_config", [{"PURGE_INTERVAL_SECONDS": 0.2, "PURGE_BATCH_SIZE": 5}])
def test_automatic_purge_runs_after_responses_bounded_per_pass(app, seeded, live_server):
    t = now()
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.add_all([RevokedAccessToken(jti=f"old-{i}", expires_at=t - DAY) for i in range(12)])
        db.session.add_all([_code(f"old-{i}", alice, expires_at=t - 2 * DAY) for i in range(12)])
        db.session.add(RevokedAccessToken(jti="live", expires_at=t + DAY))
        db.session.commit()
    # One pass removes at most 5 of each kind (13 -> 8 -> 3 -> 1 for the deny list). A pass is
    # best-effort (a worker that misses one purges at the next interval), so the test sends
    # requests past the interval until the backlog is gone and checks each step's size.
    counts = [(_count(app, RevokedAccessToken), _count(app, AuthorizationCode))]
    for _ in range(30):
        time.sleep(0.3)  # past the interval
        with urllib.request.urlopen(live_server.url + "/.well-known/openid-configuration") as response:
            assert response.status == 200
        _wait_for(lambda: (_count(app, RevokedAccessToken), _count(app, AuthorizationCode)) != counts[-1], timeout=3.0)
        time.sleep(0.1)  # let a pass that has begun finish
        counts.append((_count(app, RevokedAccessToken), _count(app, AuthorizationCode)))
        if counts[-1] == (1, 0):
            break
    assert counts[-1] == (1, 0), counts  # the live entry stays
    steps = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(counts, counts[1:])]
    assert all(0 <= jtis <= 5 and 0 <= codes <= 5 for jtis, codes in steps), counts  # bounded per pass
    assert len([s for s in steps if s != (0, 0)]) >= 3, counts  # 12 rows of each kind took three passes


@pytest.mark.parametrize("app_config", [{"PURGE_INTERVAL_SECONDS": 3600, "PURGE_BATCH_SIZE": 5}])
def test_automatic_purge_waits_for_its_interval(app, seeded, live_server):
    with app.app_context():
        db.session.add_all([RevokedAccessToken(jti=f"old-{i}", expires_at=now() - DAY) for i in range(3)])
        db.session.commit()
    for _ in range(3):
        with urllib.request.urlopen(live_server.url + "/") as response:
            assert response.status == 200
    time.sleep(0.3)
    assert _count(app, RevokedAccessToken) == 3


def test_purge_settings_are_checked():
    from app import create_app
    from conftest import make_config
    from identity.config.startup import ConfigurationError

    create_app(make_config("sqlite://", PURGE_INTERVAL_SECONDS=0))  # 0: no automatic purge (use the command)
    for bad in ({"PURGE_INTERVAL_SECONDS": -1}, {"PURGE_BATCH_SIZE": 0}, {"AUDIT_RETENTION_DAYS": 0},
                {"PURGE_BATCH_SIZE": "many"}, {"CODE_TOMBSTONE_SECONDS": -5}):
        with pytest.raises(ConfigurationError):
            create_app(make_config("sqlite://", **bad))


def test_overlapping_passes_of_several_workers_remove_each_row_once(app, seeded, database_uri):
    """Four workers' passes at once (each its own app, engine and connections, as gunicorn
    workers or instances have): no error, and the counts add up to the rows actually removed."""
    import threading

    from app import create_app
    from conftest import make_config
    from identity.services.purge import purge_pass

    with app.app_context():
        db.session.add_all([RevokedAccessToken(jti=f"old-{i}", expires_at=now() - DAY) for i in range(300)])
        db.session.add(RevokedAccessToken(jti="live", expires_at=now() + DAY))
        db.session.commit()
    workers = [create_app(make_config(database_uri)) for _ in range(4)]
    results, errors = [], []
    start = threading.Barrier(len(workers))

    def run(worker):
        try:
            with worker.app_context():
                start.wait()
                results.append(purge_pass(100)["revoked_access_tokens"])
                db.session.remove()
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for worker in workers:
        close_connections(worker)
    assert errors == [] and len(results) == 4
    assert all(0 <= count <= 100 for count in results)
    assert _count(app, RevokedAccessToken) == 301 - sum(results)
    with app.app_context():
        from identity.services.purge import purge

        purge()
    assert _count(app, RevokedAccessToken) == 1


@pytest.mark.server
def test_gunicorn_workers_purge_on_their_own_and_the_command_reports_json(tmp_path):
    """Two gunicorn workers purging after their responses (as deployed) clear a backlog many
    batches long, keep what is live, and log no failure; `flask purge --json` then finds nothing."""
    import os

    import requests
    from sqlalchemy import create_engine, text

    from servers import AppServer

    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI") or ""
    if not uri.startswith("postgresql"):
        uri = "sqlite:///" + str(tmp_path / "purge.db")
    env = {"FLASK_PURGE_INTERVAL_SECONDS": "0.2", "FLASK_PURGE_BATCH_SIZE": "5"}
    with AppServer(uri, workers=2, name="purge", log_dir=tmp_path, env=env) as server:
        engine = create_engine(uri)
        t = now()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM revoked_access_tokens"))
            conn.execute(text("INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (:jti, :exp)"),
                         [{"jti": f"old-{i}", "exp": t - DAY} for i in range(40)] + [{"jti": "live", "exp": t + DAY}])

        def left() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM revoked_access_tokens")).scalar()

        deadline = time.monotonic() + 60
        while left() > 1 and time.monotonic() < deadline:
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
            time.sleep(0.05)
        assert left() == 1, server.log()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT jti FROM revoked_access_tokens")).scalar() == "live"
        log = server.log(400)
        assert "purge pass failed" not in log and "Traceback" not in log, log
        report = json.loads(server.cli(["purge", "--json"]).stdout)
        assert report == dict.fromkeys(EXPECTED_COUNTS, 0)
        engine.dispose()
