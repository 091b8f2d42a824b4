"""A backup taken while the server serves, and its restore into the database the app serves
from, as docs/deployment.md ("Backups, restores and downgrades") tells an operator to do: on
SQLite the online backup API (what `sqlite3 identity.db ".backup copy.db"` uses); on PostgreSQL
every table's rows, put back in one transaction (what a data-only `pg_dump` and its restore do)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import text

from identity.extensions import db


def _sqlite_path(app) -> str | None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def backup(app, tmp_path):
    """The database now: a copy file on SQLite, every table's rows on PostgreSQL."""
    path = _sqlite_path(app)
    if path:
        copy = str(tmp_path / "backup.db")
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close(), target.close()
        return copy
    with app.app_context():
        with db.engine.connect() as conn:
            return {table.name: [dict(row._mapping) for row in conn.execute(table.select())]
                    for table in db.metadata.sorted_tables}


def restore(app, saved) -> None:
    """Put the backup back under the running app (its workers' memories stay as they were)."""
    path = _sqlite_path(app)
    with app.app_context():
        db.session.remove()
        if path:
            db.engine.dispose()
            source, target = sqlite3.connect(saved), sqlite3.connect(path)
            try:
                source.backup(target)
            finally:
                source.close(), target.close()
            return
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
            for table in db.metadata.sorted_tables:
                if saved[table.name]:
                    conn.execute(table.insert(), saved[table.name])
            for table in db.metadata.sorted_tables:  # what pg_restore sets: each sequence past its rows
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto" and column.type.python_type is int):
                        conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                                          f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"))
