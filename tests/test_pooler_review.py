"""Review from outside: PostgreSQL as production runs it, behind PgBouncer (transaction and session
pooling) and as a managed service. Each test is a defect found and fixed (tests/pooler_review_support.py
starts a test-owned PgBouncer in front of the test database)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, text

from app import create_app
from conftest import make_config, postgresql_only
from identity.extensions import db
from identity.models import User
from identity.services.schema import check_schema_on_start, schema_problem
from identity.store import lockout as lockout_rows
from identity.store.connection import AutocommitConnection, autocommit_connection
from identity.store.writes import write
from pooler_review_support import pgbouncer

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")

pytestmark = postgresql_only()


@pytest.fixture(scope="module")
def transaction_pool(_migrated):
    """PgBouncer in transaction pooling (what hosted poolers use), one server connection."""
    with pgbouncer(DATABASE_URI, pool_mode="transaction", pool_size=1) as bouncer:
        yield bouncer


def test_server_behind_pgbouncer_refuses_to_start_naming_the_startup_parameter(transaction_pool):
    """PgBouncer refuses libpq's `options` startup parameter, which carries the serving process's
    statement_timeout: every connection failed, and the server logged only "database unreachable:
    OperationalError" and served 503 for ever. It now stops at start, saying what to change."""
    app = create_app(make_config(transaction_pool.uri))
    with app.app_context():
        problem = schema_problem()
        db.engine.dispose()
    assert problem is not None and "unsupported startup parameter: options" in problem, problem
    assert "DATABASE_STATEMENT_TIMEOUT_SECONDS=0" in problem and "ALTER ROLE" in problem, problem
    app.config["TESTING"] = False
    with pytest.raises(SystemExit) as stopped:
        check_schema_on_start(app)
    assert stopped.value.code == 3
    with app.app_context():
        db.engine.dispose()


def test_rotation_connection_leaves_synchronous_commit_to_other_clients_of_the_pool(transaction_pool):
    """ROTATION_SYNCHRONOUS_COMMIT off (the default) made the autocommit connection run
    `SET synchronous_commit TO off`: through a transaction pooler that setting stays on the server
    connection and every other client given it (the pooled sessions' security writes, other
    workers) commits without waiting for the WAL. Rotations now ask for it per transaction."""
    app = create_app(make_config(transaction_pool.uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=0))
    with app.app_context():
        reader = autocommit_connection()
        assert reader.first(text("SELECT 1"), {}) == (1,)
        # by its source, not its value: the CI's throwaway database has synchronous_commit off itself
        setting, source = db.session.execute(
            text("SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'")).one()
        db.session.remove()
        reader.close()
        db.engine.dispose()
    assert source != "session", f"a pooled session commits with synchronous_commit={setting}, another client's SET"


def test_two_migration_runs_through_a_transaction_pooler_do_not_overlap(_migrated):
    """`db upgrade` took a session advisory lock and committed: through PgBouncer's transaction
    pooling the lock stayed on a server connection that went back to the pool, and the next run
    handed that server connection was granted the lock again (a session's advisory locks stack),
    so two instances upgrading together migrated at once. The lock is now held by a transaction
    kept open for the whole run, which pins its server connection."""
    from flask_migrate import upgrade
    from sqlalchemy import event

    from identity.services.schema import MIGRATIONS_DIR, _logging_kept, attach_migrate
    from servers import ROOT, server_env

    with pgbouncer(DATABASE_URI, pool_mode="transaction", pool_size=3) as bouncer:
        app = create_app(make_config(bouncer.uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=0))
        attach_migrate(app)
        locked, inside, release = threading.Event(), threading.Event(), threading.Event()

        def pause_in_the_run(_conn, _cursor, statement, *_args):
            # the first statement after the lock's, before it is sent: the run holds the lock and
            # is between transactions, as it is between two migrations
            if locked.is_set() and not inside.is_set():
                inside.set()
                release.wait(30)
            if "advisory" in statement:
                locked.set()

        def first_run():
            with app.app_context():
                event.listen(db.engine, "before_cursor_execute", pause_in_the_run)
                try:
                    with _logging_kept():  # Alembic's fileConfig would replace the root handlers
                        upgrade(directory=MIGRATIONS_DIR)
                finally:
                    event.remove(db.engine, "before_cursor_execute", pause_in_the_run)
                    db.engine.dispose()

        runner = threading.Thread(target=first_run)
        runner.start()
        try:
            assert inside.wait(30)
            second = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT,
                                      env=server_env(bouncer.uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                second.wait(4)
            except subprocess.TimeoutExpired:
                pass
            overlapped = second.returncode is not None
        finally:
            release.set()
            runner.join(30)
        out, _ = second.communicate(timeout=60)
        assert not overlapped, "a second `db upgrade` ran while the first held the migration lock"
        assert second.returncode == 0, out


def _alice_and_attempts(app) -> tuple[int, int]:
    with app.app_context():
        row = db.session.execute(select(User.id, User.failed_attempts).where(User.username == "alice")).one()
        db.session.remove()
    return tuple(row)


def _in_three_workers_through_a_transaction_pool(write_once) -> tuple[list[str], bool]:
    """`write_once()` 7 times in each of three workers (apps) sharing PgBouncer's transaction pool
    of two server connections: the first line of each failure (a 503's cause), and whether a
    connection stopped preparing (reset for the tests after)."""
    with pgbouncer(DATABASE_URI, pool_mode="transaction", pool_size=2) as bouncer:
        workers = [create_app(make_config(bouncer.uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=0)) for _ in range(3)]
        failures = []
        for _ in range(7):
            for worker in workers:
                with worker.app_context():
                    try:
                        write_once()
                    except Exception as err:  # noqa: BLE001  (the 503's cause)
                        failures.append(str(getattr(err, "orig", err)).splitlines()[0])
        for worker in workers:
            with worker.app_context():
                autocommit_connection().close()
                db.engine.dispose()
    lost, AutocommitConnection.prepares_lost = AutocommitConnection.prepares_lost, False
    return failures, lost


def test_hot_path_writes_through_a_transaction_pooler_do_not_fail_on_prepared_statements(app, seeded):
    """psycopg prepares a statement on its fifth run. The autocommit connection's writes (the sign-in's
    attempt counter, refresh rotations, code redemption) then went as `_pg3_0` to whichever server
    connection PgBouncer's transaction pooling handed out: where another worker had prepared its own
    `_pg3_0` the write failed with DuplicatePreparedStatement (a 503), and where none had, with
    "prepared statement does not exist". The statement never ran, so it is now run again unprepared,
    and that connection prepares nothing more."""
    alice_id, before = _alice_and_attempts(app)
    failures, lost = _in_three_workers_through_a_transaction_pool(
        lambda: lockout_rows.record_sign_in_attempt(alice_id, stamp=1, limit=1000, lock_until=2))
    assert not failures, failures[0]
    assert lost
    assert _alice_and_attempts(app) == (alice_id, before + 21)


def test_a_pooler_that_drops_the_statement_timeout_stops_the_server_at_start(_migrated):
    """With PgBouncer's `ignore_startup_parameters = options` the server connected, but every
    statement ran without the statement_timeout DATABASE_STATEMENT_TIMEOUT_SECONDS promises (the
    request's 503 after 30 s, granian's only bound): nothing said so. It now stops at start."""
    with pgbouncer(DATABASE_URI, pool_mode="transaction", pool_size=1,
                   extra="ignore_startup_parameters = options") as bouncer:
        app = create_app(make_config(bouncer.uri))
        app.config["TESTING"] = False
        try:
            with pytest.raises(SystemExit) as stopped:
                check_schema_on_start(app)
            assert stopped.value.code == 3
        finally:
            with app.app_context():
                db.engine.dispose()


def test_several_writes_in_one_pipelined_transaction_through_a_transaction_pooler_do_not_fail(app, seeded):
    """The same for the writes sent together (write_all: the sign-in's writes after the hash):
    their prepared statements failed the whole transaction with a 503, again and again, since the
    connection went on preparing. The transaction never committed, so it is sent once more."""
    alice_id, _ = _alice_and_attempts(app)
    failures, _ = _in_three_workers_through_a_transaction_pool(  # one attempt counted and one taken back
        lambda: write(lockout_rows.release_attempt(alice_id, place=1000, own_lock=-1),
                      lockout_rows.release_attempt(alice_id, place=1000, own_lock=-1)))
    assert not failures, failures[0]
