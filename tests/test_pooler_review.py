"""Review from outside: PostgreSQL as production runs it, behind PgBouncer (transaction and session
pooling) and as a managed service. Each test is a defect found and fixed (tests/pooler_review_support.py
starts a test-owned PgBouncer in front of the test database)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from app import create_app
from conftest import make_config
from identity.extensions import db
from identity.services.schema import check_schema_on_start, schema_problem
from identity.store.connection import autocommit_connection
from pooler_review_support import pgbouncer

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not DATABASE_URI.startswith("postgresql"),
        reason="needs PostgreSQL: set FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://... (.ci/run does)",
    ),
]


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
        setting = db.session.execute(text("SHOW synchronous_commit")).scalar()
        db.session.remove()
        reader.close()
        db.engine.dispose()
    assert setting == "on", f"a pooled session commits with synchronous_commit={setting}"
