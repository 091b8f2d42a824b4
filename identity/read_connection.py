"""One autocommit database connection per process for the bearer check's single read.

Every local API request asks the database one question (is this token's user live, and is the
token not revoked?). Through the session that costs a pool checkout, a transaction, a rollback
on return and the ORM's bookkeeping, several times the query itself. This connection is taken
from the engine once (so the engine's connect hooks ran on it), detached from the pool and put
in autocommit mode: each statement sees the latest committed data, holds no locks between
requests, and runs as one round trip. A lock keeps threaded servers (`flask run`) to one
statement at a time on it. If the connection has broken (database restarted), the statement is
retried once on a new one; a second failure is raised as SQLAlchemy's DBAPIError, which the
app answers with 503.
"""

import os
import threading

from flask import current_app
from sqlalchemy.exc import DBAPIError

from .extensions import db

_INHERITED: list = []


class ReadConnection:
    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect
        self._lock = threading.Lock()
        self._connection = None
        self._pid = None
        self._statements: dict[object, tuple[str, tuple | None]] = {}
        self.executed = 0  # statements run, for tests and diagnostics

    def _open(self):
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # ours alone: the pool neither hands it out nor resets it
        if self.dialect.name == "sqlite":
            connection.isolation_level = None  # autocommit: no read transaction left open
        else:
            connection.autocommit = True
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: nothing to release
                pass

    def _compiled(self, statement) -> tuple[str, tuple | None]:
        """SQL text for this dialect, and the order of its parameters if the driver wants them by position."""
        compiled = self._statements.get(statement)
        if compiled is None:
            sql = statement.compile(dialect=self.dialect)
            compiled = (sql.string, tuple(sql.positiontup) if sql.positional else None)
            self._statements[statement] = compiled
        return compiled

    def first(self, statement, params: dict):
        """The first row of a prepared Core `select` (a tuple), or None."""
        sql, order = self._compiled(statement)
        args = tuple(params[name] for name in order) if order is not None else params
        with self._lock:
            for attempt in (1, 2):
                if self._pid != os.getpid() and self._connection is not None:
                    # forked: the parent's connection must not be closed (or freed) from here
                    _INHERITED.append(self._connection)
                    self._connection = None
                connection = self._connection
                try:
                    if connection is None:
                        connection = self._open()
                    cursor = connection.cursor()
                    try:
                        cursor.execute(sql, args)
                        self.executed += 1
                        return cursor.fetchone()
                    finally:
                        cursor.close()
                except self.dialect.loaded_dbapi.Error as err:
                    self._close()
                    if attempt == 2:
                        raise DBAPIError.instance(sql, args, err, self.dialect.loaded_dbapi.Error,
                                                  dialect=self.dialect) from err
        return None  # not reached


def read_connection() -> ReadConnection:
    """This app's read connection (one per app and process; created on first use)."""
    extensions = current_app.extensions
    reader = extensions.get("identity_read_connection")
    if reader is None:
        reader = extensions["identity_read_connection"] = ReadConnection(db.engine)
    return reader
