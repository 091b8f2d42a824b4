"""The lock an operator's or a user's change of one row takes before it reads the row.

PostgreSQL locks the row (FOR NO KEY UPDATE, so rows referring to it may still be written); SQLite
has no row locks and ignores FOR UPDATE, so there an UPDATE that changes nothing takes the
database's write lock. Either way the session's transaction is the only one changing the row until
it ends: the same change made twice at once is made once, and the second finds it made.
"""

from sqlalchemy import bindparam, select, update

from ..extensions import db
from .connection import autocommit_connection


class RowLock:
    """`RowLock(table, column)(value)`: lock the row of `table` whose `column` is `value`.
    `key_change`: for a change of one of the row's unique keys, FOR UPDATE on PostgreSQL (taken at
    once: a weaker lock raised later in the transaction could deadlock with a writer of a row
    that refers to this one, if that writer, holding the row's KEY SHARE, waits for something the
    raiser holds). Not for a transaction that also ends rows a writer takes before its KEY SHARE
    (a redemption holds its code and session, then waits for it): the seed, which ends a user's
    codes and sessions, takes the default and lets the address's UPDATE raise it after those
    (services/seed.py, _apply_profile)."""

    def __init__(self, table, column, *, key_change: bool = False):
        self._select = select(table.c.id).where(column == bindparam("locked")).with_for_update(key_share=not key_change)
        self._update = update(table).where(column == bindparam("locked")).values(id=table.c.id)

    def __call__(self, value) -> None:
        statement = self._update if autocommit_connection().is_sqlite else self._select
        db.session.execute(statement, {"locked": value})

    def on_postgresql(self, value) -> tuple:
        """PostgreSQL's lock as a write (statement, parameters), for a transaction that is not the
        session's (store.writes.write_after's `locked_first`)."""
        return self._select, {"locked": value}
