"""Faults in one step of an operation: a trigger that refuses one kind of write to one table
(SQLite RAISE(ABORT), PostgreSQL RAISE EXCEPTION), and a snapshot of every table's rows, to tell
whether an operation that failed left anything behind."""

from contextlib import contextmanager

from sqlalchemy import select, text

from identity.extensions import db

LEAKS_RE = r"Traceback|File \"|psycopg|sqlite3|OperationalError|IntegrityError|InternalError|injected fault"


def snapshot(app, skip=("alembic_version",)) -> dict:
    """Every table's rows, as sorted tuples of strings."""
    with app.app_context():
        tables = {}
        for table in db.metadata.sorted_tables:
            if table.name in skip:
                continue
            rows = db.session.execute(select(table)).all()
            tables[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
        db.session.remove()
    return tables


def changed_tables(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


@contextmanager
def refused(app, table: str, op: str, *, errcode: str = "P0001"):
    """While the block runs, every `op` (INSERT, UPDATE, DELETE) on `table` fails in the database.
    On PostgreSQL the error has the SQLSTATE `errcode` (P0001 raise_exception; 23514
    check_violation is a constraint's, as SQLite's RAISE(ABORT) always is)."""
    name = f"fault_{table}_{op.lower()}"
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(text(f"CREATE TRIGGER {name} BEFORE {op} ON {table} "
                                  f"BEGIN SELECT RAISE(ABORT, 'injected fault'); END"))
            else:
                function = f"fault_raise_{errcode.lower()}"
                conn.execute(text(f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
                                  f"AS $$ BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '{errcode}'; END $$"))
                conn.execute(text(f"CREATE TRIGGER {name} BEFORE {op} ON {table} "
                                  f"FOR EACH ROW EXECUTE FUNCTION {function}()"))
        db.session.remove()
    try:
        yield
    finally:
        with app.app_context():
            with db.engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
                else:
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            db.session.remove()
