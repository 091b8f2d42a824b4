"""Signing keys as rows: read them all, and write new ones in a transaction of their own.

A key is usually made in the middle of a request (the first signing of the day, a scheduled
successor). Its writes must never commit or roll back the request's work, so they run on a
connection of their own. SQLite has one writer: when the request's session already holds the
write lock, a second connection would wait for it until its busy timeout, so there the keys are
written in a savepoint of the session's transaction and committed with the request; the
writer then reports `provisional`, and the service reloads once the request has committed.
"""

from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.engine import Connection

from ..extensions import db
from ..models import SigningKey
from .writes import Write

TABLE = SigningKey.__table__


def all_keys() -> list:
    """Every key row as a plain row (never an ORM object the session could hold stale)."""
    return list(db.session.execute(select(TABLE).order_by(TABLE.c.id)))


@dataclass
class KeyWriter:
    """The statements a key change is made of, on the transaction `key_writes` opened."""

    conn: Connection
    provisional: bool = False

    def add(self, *, kid: str, alg: str, generation: int, activates_at: int, created_at: int,
            private_jwk: str, retires: int | None = None) -> None:
        """A new key; `retires` is the row id of the key it succeeds (retired when it activates).

        The predecessor's row is written first, then the new one: the order of an emergency
        rotation (revoke_all, then its key), which may make the same generation at the same
        moment. The other way round, on PostgreSQL each waited for the other (the insert for the
        same generation's, the revocation for the predecessor's row) and one was aborted."""
        if retires is not None:
            self.conn.execute(update(TABLE).where(TABLE.c.id == retires).values(retired_at=activates_at))
        self.conn.execute(insert(TABLE).values(
            kid=kid, alg=alg, generation=generation, created_at=created_at, activates_at=activates_at,
            private_jwk=private_jwk))

    def revoke_all(self, alg: str, stamp: int) -> None:
        """Every key of the algorithm leaves the JWKS now (a compromised key)."""
        self.conn.execute(update(TABLE).where(TABLE.c.alg == alg, TABLE.c.revoked_at.is_(None)).values(
            revoked_at=stamp,
            retired_at=case((or_(TABLE.c.retired_at.is_(None), TABLE.c.retired_at > stamp), stamp),
                            else_=TABLE.c.retired_at)))

    def retire_all(self, alg: str, stamp: int) -> int:
        """Every key of the algorithm retires now, if it had not: it signs nothing more and stays
        published for the retention time (an algorithm no longer configured). Returns how many."""
        return self.conn.execute(update(TABLE).where(
            TABLE.c.alg == alg, TABLE.c.revoked_at.is_(None),
            or_(TABLE.c.retired_at.is_(None), TABLE.c.retired_at > stamp)).values(retired_at=stamp)).rowcount

    def replace_private_jwk(self, row_id: int, new: str, *, if_still: str | None = None) -> None:
        """Store a key's private part anew (encrypted); with `if_still`, only if it is unchanged
        (so racing workers that both encrypt a plaintext key write it once)."""
        condition = [TABLE.c.id == row_id]
        if if_still is not None:
            condition.append(TABLE.c.private_jwk == if_still)
        self.conn.execute(update(TABLE).where(*condition).values(private_jwk=new))

    def run(self, write: Write) -> None:
        """A prepared write of another table (the audit event) in the same transaction."""
        self.conn.execute(*write)


def holds_sqlite_write_lock() -> bool:
    """Whether the session's transaction has written on SQLite (and so holds its one write lock)."""
    session = db.session()
    if db.engine.dialect.name != "sqlite" or not session.in_transaction():
        return False
    return bool(session.connection().connection.dbapi_connection.in_transaction)


@contextmanager
def key_writes():
    """A transaction of its own for key writes (see the module's docstring for SQLite)."""
    if holds_sqlite_write_lock():
        with db.session.begin_nested():
            yield KeyWriter(db.session.connection(), provisional=True)
        return
    with db.engine.begin() as conn:
        yield KeyWriter(conn)


def commit_request() -> None:
    """Commit what the request's session holds (a provisional key made in its savepoint)."""
    db.session.commit()
