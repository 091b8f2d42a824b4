"""Running the suite under pytest-xdist: what each worker process must not share with the others.

A test is written as if it were alone: it empties the database it is given, starts servers that
share that database, counts rate-limit hits in Redis. Under `pytest -n N` each worker therefore
gets, before any test module is imported (test modules read the environment at import time):

- a PostgreSQL database of its own, `<database>_<worker>` (e.g. identity_test_gw0), made afresh
  from the one FLASK_SQLALCHEMY_DATABASE_URI names (so the migrations still apply from nothing)
  and with that database's settings; the role needs CREATEDB. SQLite files already live under
  each worker's own tmp directory;
- a Redis database number of its own: the one in IDENTITY_TEST_REDIS_URL plus the worker's index;

and the tests marked `serial` (timing and memory measurements) run while no other test runs:
every other test holds a shared lock on a file of this run, a serial one holds it exclusively.
Ports, browser profiles and scratch files are already per process (free ports, tmp_path).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

DATABASE_ENV = "FLASK_SQLALCHEMY_DATABASE_URI"
REDIS_ENV = "IDENTITY_TEST_REDIS_URL"
REDIS_DATABASES = 16  # Redis's default `databases`


def worker_name() -> str | None:
    """gw0, gw1, ... in an xdist worker; None in a run without xdist (or in xdist's controller)."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def isolate(worker: str) -> None:
    """Point this worker's environment at a database and a Redis database of its own."""
    index = int(worker.removeprefix("gw"))
    uri = os.environ.get(DATABASE_ENV, "")
    if uri.startswith("postgresql"):
        os.environ[DATABASE_ENV] = fresh_postgres_database(uri, f"{worker}")
    redis_url = os.environ.get(REDIS_ENV)
    if redis_url:
        os.environ[REDIS_ENV] = redis_database(redis_url, index)


def fresh_postgres_database(uri: str, suffix: str) -> str:
    """Drop and create `<database>_<suffix>` next to the database `uri` names; return its URI."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    name = f"{url.database}_{suffix}"
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            settings = conn.execute(text(
                "SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                "WHERE d.datname = :name AND s.setrole = 0"), {"name": url.database}).scalars().all()
            quoted = conn.dialect.identifier_preparer.quote(name)
            drop_database(conn, quoted)
            try:
                conn.execute(text(f"CREATE DATABASE {quoted} ENCODING 'UTF8' TEMPLATE template0"))
            except Exception as err:
                raise RuntimeError(
                    f"cannot create {name} for this pytest-xdist worker: the role {url.username} needs CREATEDB "
                    f"(ALTER ROLE {url.username} CREATEDB), or run without -n") from err
            for setting in settings:  # e.g. synchronous_commit=off, as .ci/run sets on the test database
                key, _, value = setting.partition("=")
                literal = "'" + value.replace("'", "''") + "'"
                conn.execute(text(f"ALTER DATABASE {quoted} SET {conn.dialect.identifier_preparer.quote(key)} = {literal}"))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def redis_database(url: str, index: int) -> str:
    """The Redis URL with database number (given number + index) modulo 16."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + index) % REDIS_DATABASES}"))


class SerialLock:
    """A readers-writer lock across the worker processes of one run, on two files in `directory`.

    A test takes the gate, then the lock (shared, or exclusive for a serial test), then lets the
    gate go: a serial test waiting for the lock keeps the gate, so no new test starts meanwhile
    and it is not starved by the other workers' overlapping shared holds.
    """

    def __init__(self, directory: Path):
        self.gate_path = directory / "serial.gate"
        self.lock_path = directory / "serial.lock"

    @contextmanager
    def held(self, *, alone: bool):
        with open(self.gate_path, "a") as gate, open(self.lock_path, "a") as lock:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def drop_database(conn, quoted_name: str) -> None:
    """DROP DATABASE ... WITH (FORCE) on an AUTOCOMMIT connection, tried again for a few seconds
    while the server refuses to end a session on it that is not the role's (an autovacuum worker
    visiting the new database; `.ci/run` grants the role pg_signal_backend, which ends those)."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    for attempt in range(20):
        try:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted_name} WITH (FORCE)"))
            return
        except DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) != "42501" or attempt == 19:  # insufficient_privilege
                raise
            time.sleep(0.25)
