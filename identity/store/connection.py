"""One autocommit database connection per process, for the hot paths' few statements.

The bearer check asks the database one question per request, and a refresh-token rotation
reads one row and then writes once. Through the ORM session each statement costs a pool
checkout, a transaction, a rollback on return and the ORM's bookkeeping: several times the
statement itself, and on PostgreSQL extra round trips for BEGIN and COMMIT. This connection is
taken from the engine once (so the engine's connect hooks ran on it), detached from the pool
and put in autocommit mode: a statement sees the latest committed data, is its own
transaction, holds no locks between requests, and costs one round trip.

- `first(select, params)`: a read. If the connection has broken (the database restarted) it
  is retried once on a new connection.
- `write_first(statement, params)`: one atomic statement (e.g. UPDATE ... RETURNING). Never
  retried: a statement that may have committed must not run twice. On PostgreSQL its commit
  waits for the WAL flush only if ROTATION_SYNCHRONOUS_COMMIT is on.
- `durable_write_first(statement, params)`: the same, committed as every security write is (on
  PostgreSQL the WAL flushed first, whatever ROTATION_SYNCHRONOUS_COMMIT says): the sign-in's
  attempt counter. Where rotations may commit without waiting, these go on a second autocommit
  connection of the process that keeps the database's synchronous_commit; one statement there
  is one round trip, where a pooled transaction cost four (ping, BEGIN, statement, COMMIT).
  Since a write is never retried, that connection is replaced whenever the first one is (a read
  that found the database gone), and is pinged first when it has been idle for a second, as the
  pool pings a connection it hands out.
- `write_all(statements)` (PostgreSQL): several statements as one transaction, sent with BEGIN
  and COMMIT in one round trip (psycopg's pipeline mode); the sign-in's writes after the hash.
- `sqlite_write()`: SQLite cannot put an UPDATE inside a CTE, so several statements run in one
  BEGIN IMMEDIATE transaction. The processes of one machine first take an exclusive lock on
  a file beside the database (`<database>.writelock`), so a writer waiting for another wakes
  within a fraction of a millisecond instead of polling in SQLite's busy handler (sleeps of 1 to
  100 ms); the waits for both locks last at most the connection's busy timeout together.

Behind a pooler that hands each transaction any server connection, a statement psycopg prepared
(on its fifth run) may be missing or taken there: it is run once more unprepared when no
transaction was open before it, and the process's autocommit connections prepare nothing more.

A lock keeps threaded servers (`flask run`) to one statement at a time on the connection.
Database errors are raised as SQLAlchemy's DBAPIError, which the app answers with 503.
"""

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from functools import partial
from urllib.parse import unquote

from flask import current_app
from sqlalchemy.exc import DBAPIError

from ..current import current_application
from ..extensions import db

_INHERITED: list = []  # connections opened before a fork: never closed (or freed) by the child
DURABLE_PING_AFTER_IDLE_SECONDS = 1.0
READ_WAIT_SECONDS = 0.05  # see AutocommitConnection.first
#: the commit of a rotation's transaction (ROTATION_SYNCHRONOUS_COMMIT off), for it alone
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO off"
#: the same for a statement that is its own transaction (no BEGIN): its pipeline's implicit one
_ASYNC_COMMIT_ALONE = "SELECT set_config('synchronous_commit', 'off', true)"
#: duplicate_prepared_statement and invalid_sql_statement_name: a statement psycopg prepared is
#: taken by another client's on the server connection, or is not on it
_PREPARED_LOST = frozenset({"42P05", "26000"})


class AutocommitConnection:
    #: True once a statement psycopg prepared (on its fifth run) was missing or taken on the server
    #: connection: behind a pooler that hands each transaction any server connection (PgBouncer's
    #: transaction pooling before 1.21), where this process's connections prepare nothing more
    prepares_lost = False

    def __init__(self, engine, *, synchronous_commit: bool = True):
        self.engine = engine
        self.synchronous_commit = synchronous_commit
        self.dialect = engine.dialect
        self.is_sqlite = self.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._connection = None
        self._pid = None
        self._statements: dict[object, tuple[str, tuple | None, dict]] = {}
        self._lock_file = None
        self._lock_file_pid = None
        self._executed = 0
        self._durable_sibling = None  # see durable_write_first
        self._last_used = 0.0  # time.monotonic() of the last statement
        self._busy_seconds = None  # SQLite: the connection's busy timeout (sqlite_write)

    # --- the connection ---------------------------------------------------------------
    def _current(self):
        if self._pid != os.getpid() and self._connection is not None:
            _INHERITED.append(self._connection)
            self._connection = None
        return self._connection

    def _open(self):
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # ours alone: the pool neither hands it out nor resets it
        if self.is_sqlite:
            connection.isolation_level = None  # autocommit: no read transaction left open
            self._busy_seconds = connection.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
        else:
            connection.autocommit = True
            if AutocommitConnection.prepares_lost:
                connection.prepare_threshold = None
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _usable(self):
        connection = self._current()
        if connection is not None and (getattr(connection, "closed", False) or getattr(connection, "broken", False)):
            self._close()
            connection = None
        return connection if connection is not None else self._open()

    @property
    def executed(self) -> int:
        """Statements run (its durable sibling's included), for tests and diagnostics."""
        return self._executed + (self._durable_sibling.executed if self._durable_sibling is not None else 0)

    def close(self) -> None:
        """Close the connection (the next statement opens a new one), and its durable sibling's."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: nothing to release
                pass
        if self._durable_sibling is not None:  # it went to the same database: as likely gone
            self._durable_sibling.close()

    def _compiled(self, statement) -> tuple[str, tuple | None, dict]:
        """SQL text for this dialect, the order of its parameters if the driver wants them by
        position, and the values bound in the statement itself."""
        compiled = self._statements.get(statement)
        if compiled is None:
            sql = statement.compile(dialect=self.dialect)
            bound = {name: value for name, value in sql.params.items() if value is not None}
            compiled = (sql.string, tuple(sql.positiontup) if sql.positional else None, bound)
            self._statements[statement] = compiled
        return compiled

    def _args(self, statement, params: dict):
        sql, order, bound = self._compiled(statement)
        if bound:
            params = {**bound, **params}
        return sql, (tuple(params[name] for name in order) if order is not None else params)

    def _execute(self, connection, sql: str, args):
        return self._unprepared_if_lost(connection, self._execute_once, connection, sql, args)

    def _unprepared_if_lost(self, connection, run, *args):
        """run(*args); if it fails because the server connection does not hold the statement
        psycopg prepared (a pooler, see _PREPARED_LOST) and no transaction was open before it (so
        nothing ran: the failure is at its Parse or Bind), once more without preparing."""
        idle = not self.is_sqlite and connection.info.transaction_status.name == "IDLE"
        try:
            return run(*args)
        except self.dialect.loaded_dbapi.Error as err:
            if not idle or getattr(err, "sqlstate", None) not in _PREPARED_LOST:
                raise
            self._stop_preparing(connection)
        return run(*args)

    def _stop_preparing(self, connection) -> None:
        self._prepare_no_more(connection)
        if connection.info.transaction_status.name != "IDLE":
            connection.execute("ROLLBACK")

    def _prepare_no_more(self, connection) -> None:
        if not AutocommitConnection.prepares_lost:
            AutocommitConnection.prepares_lost = True
            current_app.logger.warning(
                "the database lost a prepared statement (a pooler such as PgBouncer in transaction "
                "pooling before 1.21): the autocommit connections prepare none from now on")
        connection.prepare_threshold = None

    def _execute_once(self, connection, sql: str, args, *, async_commit: bool = False):
        cursor = connection.cursor()
        try:
            if async_commit:  # _execute_write
                with connection.pipeline():
                    connection.execute(_ASYNC_COMMIT_ALONE)
                    cursor.execute(sql, args)
            else:
                cursor.execute(sql, args)
            self._executed += 1
            self._last_used = time.monotonic()
            return cursor.fetchone() if cursor.description is not None else None, cursor.rowcount
        finally:
            cursor.close()

    def _execute_write(self, connection, sql: str, args):
        """_execute for a data-changing statement. On a connection whose commits do not wait for the
        WAL (ROTATION_SYNCHRONOUS_COMMIT off: its writes are rotations) the statement follows
        `set_config('synchronous_commit', 'off', true)` in one pipeline: both run in the implicit
        transaction that ends, and commits, at the pipeline's Sync, so the setting holds for this
        commit alone, in one round trip. A session-wide SET would stay on the server connection
        behind a transaction pooler (PgBouncer), and every client handed it next would commit its
        own writes without waiting; an explicit BEGIN, SET LOCAL and COMMIT around the statement
        cost a rotation 0.14 ms more of CPU (four statements, not two)."""
        if self.synchronous_commit or self.is_sqlite:
            return self._execute(connection, sql, args)
        return self._unprepared_if_lost(connection, partial(self._execute_once, async_commit=True), connection, sql, args)

    def _raise(self, sql, args, err):
        raise DBAPIError.instance(sql, args, err, self.dialect.loaded_dbapi.Error, dialect=self.dialect) from err

    # --- statements ---------------------------------------------------------------------
    def first(self, statement, params: dict):
        """The first row of a prepared Core `select` (a tuple), or None.

        A read waits for this connection READ_WAIT_SECONDS at most, then runs on a connection of
        the engine's pool: the thread holding it may be waiting, inside a write, for a lock that
        the reading request's own transaction holds (SQLite's one write lock; a row that
        lock_user_row locked), and would wait for it the busy timeout out while the read waited
        for the connection (the mail sender thread auditing a mail beside a request; two requests
        on a server's threads)."""
        sql, args = self._args(statement, params)
        if not self._lock.acquire(timeout=READ_WAIT_SECONDS):
            return self._first_on_a_pooled_connection(sql, args)
        try:
            for attempt in (1, 2):
                try:
                    return self._execute(self._usable(), sql, args)[0]
                except self.dialect.loaded_dbapi.Error as err:
                    self._close()
                    if attempt == 2:
                        self._raise(sql, args, err)
        finally:
            self._lock.release()
        return None  # not reached

    def _first_on_a_pooled_connection(self, sql: str, args):
        """`first`'s read on a connection of the engine's pool, given back (rolled back) after."""
        pooled = self.engine.raw_connection()  # the database unreachable: DBAPIError, a 503
        try:
            cursor = pooled.cursor()
            try:
                cursor.execute(sql, args)
                return cursor.fetchone()
            finally:
                cursor.close()
        except self.dialect.loaded_dbapi.Error as err:
            pooled.invalidate()
            self._raise(sql, args, err)
        finally:
            pooled.close()

    def write_first(self, statement, params: dict):
        """Run one data-changing statement as its own transaction; its first RETURNING row, or None."""
        sql, args = self._args(statement, params)
        with self._lock:
            try:
                return self._execute_write(self._usable(), sql, args)[0]
            except self.dialect.loaded_dbapi.Error as err:
                self._close()
                self._raise(sql, args, err)
        return None  # not reached

    def write_count(self, statement, params: dict) -> int:
        """Run one data-changing statement as its own transaction; the rows it changed. Never retried."""
        sql, args = self._args(statement, params)
        with self._lock:
            try:
                return self._execute_write(self._usable(), sql, args)[1]
            except self.dialect.loaded_dbapi.Error as err:
                self._close()
                self._raise(sql, args, err)
        return 0  # not reached

    def durable(self) -> "AutocommitConnection":
        """The connection whose commits are as durable as any security write's: this one, if its
        commits wait for the WAL (or on SQLite), else its sibling (see the module's docstring)."""
        if self.synchronous_commit or self.is_sqlite:
            return self
        with self._lock:
            if self._durable_sibling is None:
                self._durable_sibling = AutocommitConnection(self.engine, synchronous_commit=True)
            sibling = self._durable_sibling
        sibling._ping_if_idle(DURABLE_PING_AFTER_IDLE_SECONDS)
        return sibling

    def durable_write_first(self, statement, params: dict):
        """write_first, committed as durably as any security write (see the module's docstring)."""
        return self.durable().write_first(statement, params)

    def write_all(self, statements) -> list[int]:
        """PostgreSQL: several data-changing statements (statement, params) as one transaction,
        sent together in psycopg's pipeline mode: BEGIN, the statements and COMMIT are one round
        trip, where each took its own. The rows each changed; if one fails, none is committed and
        the error is raised. Never retried."""
        error = self.dialect.loaded_dbapi.Error
        compiled = [self._args(statement, params) for statement, params in statements]
        with self._lock:
            connection = self._usable()
            try:
                counts = self._unprepared_if_lost(connection, self._pipelined, connection, compiled)
            except error as err:
                self._roll_back(connection)
                self._raise(";\n".join(sql for sql, _ in compiled), [args for _, args in compiled], err)
            except BaseException:
                self._close()  # interrupted mid-pipeline: its state is unknown
                raise
            self._executed += len(compiled)
            self._last_used = time.monotonic()
            return counts

    def _pipelined(self, connection, compiled) -> list[int]:
        """write_all's transaction, in one round trip: the rows each statement changed."""
        cursors = []
        try:
            with connection.pipeline():
                connection.execute("BEGIN")
                if not self.synchronous_commit:
                    connection.execute(_ASYNC_COMMIT)
                for sql, args in compiled:
                    cursors.append(connection.cursor())
                    cursors[-1].execute(sql, args)
                connection.execute("COMMIT")
            return [cursor.rowcount for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def _roll_back(self, connection) -> None:
        """After a failed statement: end the transaction it left open, or drop a broken connection."""
        try:
            if not connection.broken and connection.info.transaction_status.name != "IDLE":
                connection.execute("ROLLBACK")
        except self.dialect.loaded_dbapi.Error:
            self._close()
        if connection.broken:
            self._close()

    @contextmanager
    def transaction(self):
        """PostgreSQL: several statements as one transaction (BEGIN ... COMMIT, ROLLBACK on error)
        on this connection; yields `run(statement, params) -> rowcount`. Never retried."""
        error = self.dialect.loaded_dbapi.Error
        with self._lock:
            connection = self._usable()

            def run(statement, params: dict) -> int:
                sql, args = self._args(statement, params)
                try:
                    return self._execute(connection, sql, args)[1]
                except error as err:
                    if getattr(err, "sqlstate", None) in _PREPARED_LOST:  # too late for this transaction
                        self._prepare_no_more(connection)
                    self._raise(sql, args, err)

            try:
                connection.execute("BEGIN")
                if not self.synchronous_commit:
                    connection.execute(_ASYNC_COMMIT)
            except error as err:
                self._close()
                self._raise("BEGIN", (), err)
            try:
                yield run
            except BaseException:
                self._roll_back(connection)
                raise
            try:
                connection.execute("COMMIT")
            except error as err:
                self._close()
                self._raise("COMMIT", (), err)

    def _ping_if_idle(self, seconds: float) -> None:
        """Close the connection if it has been idle for `seconds` and no longer answers."""
        with self._lock:
            connection = self._current()
            if connection is None or time.monotonic() - self._last_used < seconds:
                return
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                finally:
                    cursor.close()
                self._last_used = time.monotonic()
            except self.dialect.loaded_dbapi.Error:
                self._close()

    @contextmanager
    def sqlite_write(self):
        """A SQLite write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error), serialised
        across this machine's processes; yields `run(statement, params) -> rowcount` (and
        `run.first(statement, params)`, the first row a statement returns).

        The waits for this process's lock, the machine's file lock and SQLite's write lock last
        together at most the connection's busy timeout (`connect_args.timeout`), then raise
        OperationalError (a 503): waited in turn, each for the whole timeout, a writer queued
        behind others that each waited the timeout out waited it once more per writer ahead."""
        if self._busy_seconds is None:  # PRAGMA busy_timeout, read when the connection opens
            with self._lock:
                try:
                    self._usable()
                except self.dialect.loaded_dbapi.Error as err:  # the database unreachable: a 503
                    self._raise("connect", (), err)
        deadline = time.monotonic() + self._busy_seconds
        if not self._lock.acquire(timeout=self._busy_seconds):
            self._raise("BEGIN IMMEDIATE", (), self.dialect.loaded_dbapi.OperationalError("database is locked"))
        try:
            with self._file_lock(deadline):
                connection = self._usable()

                def run(statement, params: dict) -> int:
                    sql, args = self._args(statement, params)
                    try:
                        return self._execute(connection, sql, args)[1]
                    except self.dialect.loaded_dbapi.Error as err:
                        self._raise(sql, args, err)

                def first(statement, params: dict):
                    """The first row a statement returns (UPDATE ... RETURNING), in this transaction."""
                    sql, args = self._args(statement, params)
                    try:
                        return self._execute(connection, sql, args)[0]
                    except self.dialect.loaded_dbapi.Error as err:
                        self._raise(sql, args, err)

                run.first = first

                try:
                    self._begin_immediate(connection, deadline)
                except self.dialect.loaded_dbapi.Error as err:
                    self._close()
                    self._raise("BEGIN IMMEDIATE", (), err)
                try:
                    yield run
                except BaseException:
                    self._sqlite_roll_back(connection)
                    raise
                try:
                    connection.execute("COMMIT")
                except self.dialect.loaded_dbapi.Error as err:  # a full disk, an I/O error
                    self._sqlite_roll_back(connection)
                    self._raise("COMMIT", (), err)
        finally:
            self._lock.release()

    def _begin_immediate(self, connection, deadline: float) -> None:
        """BEGIN IMMEDIATE, waiting for SQLite's write lock only for what is left until `deadline`."""
        left = deadline - time.monotonic()
        if left > self._busy_seconds - 0.05:  # the locks were free: SQLite's own busy timeout
            connection.execute("BEGIN IMMEDIATE")
            return
        connection.execute(f"PRAGMA busy_timeout = {max(1, int(left * 1000))}")
        try:
            connection.execute("BEGIN IMMEDIATE")
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_seconds * 1000)}")

    def _flock_until(self, deadline: float) -> None:
        if not _flock_wait(self._lock_file.fileno(), deadline):
            self._raise("BEGIN IMMEDIATE", (), self.dialect.loaded_dbapi.OperationalError("database is locked"))

    def _sqlite_roll_back(self, connection) -> None:
        """End the transaction a failed statement or COMMIT left open, if SQLite has not already
        rolled it back; if the ROLLBACK fails too, drop the connection (closing it rolls back), so
        that the caller raises the first error, not this one."""
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except self.dialect.loaded_dbapi.Error:
            self._close()

    @contextmanager
    def _file_lock(self, deadline: float):
        if self._lock_file is None or self._lock_file_pid != os.getpid():
            database = sqlite_file(self.engine.url)
            path = (database if database and database != ":memory:" else os.path.join(current_app.instance_path, "memory")) + ".writelock"
            try:
                # read-only: flock needs no more, so a lock file another user made (an operator's
                # command run as root: root:root 0644) still serves the service's user
                self._lock_file = os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")  # noqa: SIM115  (held for the process's life)
            except OSError as err:  # the database's directory is gone (a volume unmounted): it is down
                self._raise("open the write lock", (), self.dialect.loaded_dbapi.OperationalError(err.strerror))
            self._lock_file_pid = os.getpid()
        self._flock_until(deadline)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)


def sqlite_file(url) -> str | None:
    """The file of a SQLite URL: its database, or for a URI filename (`sqlite:///file:/path/x.db?
    mode=rwc&uri=true`, SQLAlchemy's form for SQLite's own options) the path inside it."""
    database = url.database
    if not database or str(url.query.get("uri", "")).lower() not in ("true", "1"):
        return database
    return uri_filename_path(database)


def uri_filename_path(filename: str) -> str:
    """The path of a SQLite URI filename (`file:/path/x.db?mode=rwc`) as SQLite reads it: no
    `file:`, authority, query or fragment; %-escapes decoded. Any other filename as it is."""
    if not filename.startswith("file:"):
        return filename
    path = filename[len("file:"):].split("?", 1)[0].split("#", 1)[0]
    if path.startswith("//"):  # file://localhost/path or file:///path
        path = path[2:]
        path = path[path.index("/"):] if "/" in path else ""
    return unquote(path)


def _flock_wait(fd: int, deadline: float) -> bool:
    """flock(fd, LOCK_EX), then whether it came before `deadline` (False: released again).

    flock has no timeout, and it need not: the holder ahead waits for SQLite's lock only until
    its own deadline, so this wait ends within a busy timeout too, and a writer that got the lock
    past its deadline gives up at once instead of waiting the busy timeout once more. A blocking
    flock wakes the next writer as soon as the one ahead is done: polling for it cost the
    refresh rotation 4% of its rate on SQLite (0.05 ms of CPU a rotation under contention)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    fcntl.flock(fd, fcntl.LOCK_EX)
    if time.monotonic() < deadline:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def autocommit_connection() -> AutocommitConnection:
    """This app's autocommit connection (one per app and process; opened on first use)."""
    app = current_application()
    connection = app.extensions.get("identity_autocommit")
    if connection is None:
        connection = app.extensions["identity_autocommit"] = AutocommitConnection(
            db.engine, synchronous_commit=app.config["ROTATION_SYNCHRONOUS_COMMIT"])
    return connection
