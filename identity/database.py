"""Schema management: upgrade to the newest migration, and tell whether the database is current."""

import logging
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db, migrate

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
UPGRADE_COMMAND = "flask --app app db upgrade"


def init_app(app: Flask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "identity.db")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {"timeout": 30})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets readers and one writer work at once; foreign keys make cascades work."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def head_revision() -> str:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision() -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_is_current() -> bool:
    return current_revision() == head_revision()


@contextmanager
def _logging_kept():
    """Undo the logging changes of Alembic's env.py, whose fileConfig() disables every existing
    logger (identity.requests, the app's own) and replaces the root handlers for the whole process."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    disabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        for name, was_disabled in disabled.items():
            logging.getLogger(name).disabled = was_disabled


def ensure_schema() -> None:
    """Create or upgrade the schema, then make sure the standard scopes exist."""
    from .services.resources import ensure_standard_resources

    if not schema_is_current():
        with _logging_kept():
            upgrade(directory=MIGRATIONS_DIR)
    if ensure_standard_resources():
        db.session.commit()


def schema_problem() -> str | None:
    """Return why the server must not serve (schema missing or old), or None."""
    try:
        current = current_revision()
    except Exception as err:  # unreachable database
        return f"database unreachable: {type(err).__name__}"
    if current != head_revision():
        return f"database schema is out of date (at {current or 'nothing'}, need {head_revision()}): run `{UPGRADE_COMMAND}`"
    return None



def check_schema_on_start(app: Flask) -> None:
    """Refuse to serve against a missing or old schema, naming the command that fixes it.

    CLI commands (other than `run`) upgrade the schema themselves, so they are let through.
    """
    if app.config.get("TESTING"):
        return
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true" and "run" not in sys.argv[1:]:
        return
    with app.app_context():
        problem = schema_problem()
    if problem and problem.startswith("database schema"):
        print(f"{app.config['PRODUCT_NAME']}: {problem}", file=sys.stderr)
        raise SystemExit(3)  # gunicorn's "worker failed to boot": the master stops instead of respawning
    if problem:
        app.logger.warning("%s; serving 503 until it is reachable", problem)
