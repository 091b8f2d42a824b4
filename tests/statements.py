"""What a request runs against the database.

- `writes(app)`: the write statements it runs through the ORM session and the commits that end
  them. Statements on the autocommit connection (identity/store/connection.py) do not pass the
  engine's events and are not seen there.
- `statements(app)`: every statement, through the engine's pool and on the autocommit connection.
- `sqlite_write_lock(path)`: whether another connection could take SQLite's write lock now.
"""

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import event

from identity.store.connection import autocommit_connection
from identity.extensions import db


@dataclass
class Writes:
    statements: list[str] = field(default_factory=list)  # "INSERT INTO audit_events", "UPDATE users", ...
    commits: int = 0  # commits of transactions that wrote

    @property
    def tables(self) -> list[str]:
        return sorted(s.split()[-1] for s in self.statements)


@contextmanager
def writes(app):
    """Record the INSERT, UPDATE and DELETE statements run inside the block, and the commits after them."""
    log = Writes()
    pending = []
    with app.app_context():
        engine = db.engine

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        words = statement.split(None, 3)
        if words and words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            verb = words[0].upper()
            table = (words[2] if verb in ("INSERT", "DELETE") else words[1]).strip('"')
            log.statements.append(f"{verb} {table}")
            pending.append(verb)

    def on_commit(conn):
        if pending:
            log.commits += 1
            pending.clear()

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


@dataclass
class Statements:
    pooled: list[str] = field(default_factory=list)  # through the engine's pool (ORM session, engine.begin)
    autocommit: int = 0  # on the process's autocommit connection

    @property
    def total(self) -> int:
        return len(self.pooled) + self.autocommit


@contextmanager
def statements(app):
    """Record every statement run inside the block."""
    log = Statements()
    with app.app_context():
        engine, reader = db.engine, autocommit_connection()
    before = reader.executed

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        log.pooled.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        log.autocommit = reader.executed - before


def sqlite_write_lock(path: str) -> str:
    """"free" if a second connection can take the SQLite database's one write lock right now
    (BEGIN IMMEDIATE, at once, without waiting), else the error it got ("database is locked")."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "free"
    except sqlite3.OperationalError as err:
        return str(err)
    finally:
        other.close()
