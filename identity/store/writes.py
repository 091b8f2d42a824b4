"""Short write transactions for the sign-in's hot path (and, on SQLite, refresh-token rotation).

On SQLite the statements run in one BEGIN IMMEDIATE transaction on the autocommit connection
(connection.py: no pool checkout, no ORM, and the machine's writers take turns). On
PostgreSQL they run as one transaction on the durable autocommit connection (whose commits wait
for the WAL, as the session's do) when the session holds no transaction: nothing of the
session's is then waiting to commit with them, and a pooled transaction would cost a ping, a
BEGIN and a COMMIT around the statements (a single statement needs neither BEGIN nor COMMIT).
There, BEGIN, the statements and COMMIT go to the database together, one round trip
(connection.write_all).
Otherwise they run in the session's transaction and commit it, with whatever else it holds.
Statements are built once, with every value as a bind parameter.
"""

import json
from functools import cache
from importlib import import_module

from sqlalchemy import bindparam, insert, select
from sqlalchemy.sql import Executable

from .connection import autocommit_connection
from ..extensions import db

Write = tuple[Executable, dict]  # a statement and its parameters


def insert_or_skip(table, conflict: tuple[str, ...], columns: tuple[str, ...]):
    """INSERT INTO `table` (`columns`, each bound by its name) ... ON CONFLICT (`conflict`) DO
    NOTHING, in the dialect of the database in use: a row that is there already, or being
    inserted by a transaction not yet committed, is skipped, where a read first and an insert
    after would break the key."""
    return _insert_or_skip("sqlite" if autocommit_connection().is_sqlite else "postgresql", table, conflict, columns)


@cache
def _insert_or_skip(dialect: str, table, conflict: tuple[str, ...], columns: tuple[str, ...]):
    """Built once; the dialect's module is imported only here (SQLAlchemy's PostgreSQL dialect is
    2.4 MiB and 0.04 s a SQLite worker never needs)."""
    dialect_insert = import_module(f"sqlalchemy.dialects.{dialect}").insert
    return (dialect_insert(table).values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing(index_elements=list(conflict)))


def insert_if(table, columns: tuple[str, ...], condition):
    """INSERT INTO `table` (`columns`, each bound by its name) SELECT ... WHERE `condition`: the
    row is written only if the condition holds when the statement runs (else it changes no row),
    judged in the same statement as the write, not by a read before it. Its rowcount is kept
    (preserve_rowcount): SQLAlchemy keeps an INSERT's only when asked, and -1 reads as a row."""
    values = select(*(bindparam(name, type_=table.c[name].type) for name in columns)).where(condition)
    return insert(table).from_select(list(columns), values).execution_options(preserve_rowcount=True)


def write(*statements: Write) -> list[int]:
    """Run the statements as one transaction; return the rows each changed."""
    connection = autocommit_connection()
    if connection.is_sqlite:
        with connection.sqlite_write() as run:
            return [run(statement, _driver_values(params)) for statement, params in statements]
    durable = durable_alone(connection)
    if durable is not None:
        if len(statements) == 1:
            statement, params = statements[0]
            return [durable.write_count(statement, _driver_values(params))]
        return durable.write_all([(statement, _driver_values(params)) for statement, params in statements])
    try:
        in_session = db.session.connection()  # Core results (rowcount) in the session's transaction
        counts = [_rows(statement, in_session.execute(statement, params)) for statement, params in statements]
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return counts


def write_if(first: Write, then: Write | None) -> bool:
    """Run `first` and, only if it changed exactly one row, `then`, as one transaction.

    True if `first` changed its row (a conditional UPDATE that consumes a code or a token: the
    one request that wins); otherwise nothing is written.
    """
    return write_after(first, *((then,) if then is not None else ())) is not None


def write_after(first: Write, *then: Write, locked_first: Write | None = None) -> list[int] | None:
    """Run `first` and, only if it changed exactly one row, the statements `then`, as one
    transaction: the rows each of `then` changed; None (nothing written) if `first` changed none.

    `locked_first`, on PostgreSQL, runs before `first`: a row lock (store.accounts.user_row_lock)
    that a transaction writing the same rows takes first too, so the two queue one behind the
    other instead of each waiting for a row the other holds (a deadlock, one of them aborted).
    SQLite's transaction holds the database's one write lock from its BEGIN: it needs none."""
    connection = autocommit_connection()
    if connection.is_sqlite:
        with connection.sqlite_write() as run:
            if run(first[0], _driver_values(first[1])) != 1:
                return None
            return [run(statement, _driver_values(params)) for statement, params in then]
    leading = (locked_first,) if locked_first is not None else ()
    durable = durable_alone(connection)
    if durable is not None:
        if not then and not leading:
            return [] if durable.write_count(first[0], _driver_values(first[1])) == 1 else None
        with durable.transaction() as run:
            for statement, params in leading:
                run(statement, _driver_values(params))
            if run(first[0], _driver_values(first[1])) != 1:
                return None
            return [run(statement, _driver_values(params)) for statement, params in then]
    try:
        in_session = db.session.connection()
        for statement, params in leading:
            in_session.execute(statement, params)
        won = in_session.execute(*first).rowcount == 1
        counts = [_rows(statement, in_session.execute(statement, params)) for statement, params in then] if won else None
    except BaseException:
        db.session.rollback()
        raise
    if won:
        db.session.commit()
    else:
        db.session.rollback()
    return counts


def durable_alone(connection):
    """The durable connection (connection.durable) when writes go there on their own: PostgreSQL,
    with the session holding no transaction (see the module's docstring); else None."""
    if connection.is_sqlite or db.session().in_transaction():
        return None
    return connection.durable()


def _rows(statement, result) -> int:
    """Rows changed. An INSERT whose primary key SQLAlchemy fetched with RETURNING reports no
    count (-1); a one-row INSERT ... VALUES that did not raise wrote its one row."""
    if result.rowcount < 0 and getattr(statement, "is_insert", False):
        return 1
    return result.rowcount


def _driver_values(params: dict) -> dict:
    """The autocommit connection hands values to the driver as they are: JSON is encoded here."""
    return {key: json.dumps(value) if isinstance(value, (dict, list)) else value for key, value in params.items()}
