"""Schema management: upgrade to the newest migration, and tell whether the database is current.

Serving never imports Alembic (with Mako and Pygments it holds ~12 MiB in every worker): the
start-up check and /readyz read the alembic_version table with plain SQLAlchemy and find the head
revision by reading the migration files as text. Flask-Migrate and Alembic are loaded only by the
commands that change the schema (`flask db ...`, and the others through ensure_schema): the
`db` group is a stand-in until it is asked for, so that every other command starts 0.2 s sooner.
"""

import ast
import logging
import os
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.engine import Engine, make_url

from ..current import current_application
from ..extensions import db

MIGRATIONS_DIR = str(Path(__file__).parent.parent / "migrations")
VERSIONS_DIR = Path(MIGRATIONS_DIR) / "versions"
UPGRADE_COMMAND = "flask --app app db upgrade"
VERSION_TABLE = "alembic_version"


def init_app(app: Flask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        try:
            os.makedirs(app.instance_path, exist_ok=True)
        except OSError as err:  # a read-only application directory (a container image): one line, not a traceback
            from ..config.startup import ConfigurationError

            raise ConfigurationError(
                f"SQLALCHEMY_DATABASE_URI is not set and the default SQLite database's folder {app.instance_path} "
                f"cannot be made ({err.strerror or err}): set FLASK_SQLALCHEMY_DATABASE_URI (PostgreSQL, or "
                "sqlite:////a/writable/folder/identity.db)") from None
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "identity.db")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        # the busy timeout: 30 s unless the engine's connect_args or the URI (`?timeout=`) say
        # otherwise (connect_args win over the URI's options: a default there hid the URI's); other
        # connect_args (cached_statements, ...) keep it, not sqlite3's own 5 s
        if "timeout" not in make_url(app.config["SQLALCHEMY_DATABASE_URI"]).query:
            options["connect_args"] = {"timeout": 30, **(options.get("connect_args") or {})}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        _bound_statements(app)
    try:
        db.init_app(app)  # makes the engine
    except (TypeError, ValueError) as err:  # create_engine's "Invalid argument(s) 'pool_sizee' sent to create_engine() ...",
        # or a number it cannot read ({"pool_recycle": "1h"}: invalid literal for int() with base 10: '1h')
        from ..config.startup import ConfigurationError

        raise ConfigurationError(f"SQLALCHEMY_ENGINE_OPTIONS cannot be used: {str(err).split('. ')[0]}") from None
    except OSError as err:  # a relative SQLite path: Flask-SQLAlchemy makes the instance folder it is read from
        from ..config.startup import ConfigurationError

        raise ConfigurationError(
            f"SQLALCHEMY_DATABASE_URI names a SQLite file relative to the instance folder {app.instance_path}, "
            f"which cannot be made ({err.strerror or err}): set FLASK_SQLALCHEMY_DATABASE_URI to an absolute path "
            "(sqlite:////a/writable/folder/identity.db) or PostgreSQL") from None
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":  # the flask command: offer `flask db ...`
        app.cli.add_command(_MigrateCommands("db", help="Perform database migrations."))


def _bound_statements(app: Flask) -> None:
    """A serving process's PostgreSQL statements, lock waits included, end after
    DATABASE_STATEMENT_TIMEOUT_SECONDS (statement_timeout; the request gets 503), so no request
    waits forever on a lock or a runaway query: granian has no per-request timeout to kill the
    worker, as gunicorn's does. Operator commands (migrations, purge) are not bounded."""
    from ..config.startup import serves_requests

    seconds = app.config.get("DATABASE_STATEMENT_TIMEOUT_SECONDS")
    if not seconds or not serves_requests():
        return
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    # libpq takes `options` from the keyword over the URI's: keep the URI's (a search_path, say) in it
    uri_options = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).query.get("options", "")
    if isinstance(uri_options, tuple):
        uri_options = " ".join(uri_options)
    server_options = connect_args.get("options") or uri_options
    if not re.search(r"statement_timeout\s*=", server_options):  # one the operator set wins
        # at least 1 ms: a statement_timeout of 0 is none at all
        milliseconds = max(1, int(float(seconds) * 1000))
        connect_args["options"] = f"{server_options} -c statement_timeout={milliseconds}".strip()
        app.extensions[STATEMENT_TIMEOUT_ASKED] = milliseconds  # checked at start: statement_timeout_problem
    options["connect_args"] = connect_args
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


#: app.extensions key: the statement_timeout (ms) a serving process asks for in libpq's options
STATEMENT_TIMEOUT_ASKED = "identity_statement_timeout_ms"
STATEMENT_TIMEOUT_PROBLEM = "database statement_timeout is"


def statement_timeout_problem() -> str | None:
    """Why the connections lack the statement_timeout _bound_statements asked for, or None: a
    pooler that drops libpq's options (PgBouncer's `ignore_startup_parameters = options`) leaves
    every statement unbounded, silently."""
    asked = current_app.extensions.get(STATEMENT_TIMEOUT_ASKED)
    if asked is None:
        return None
    try:
        with db.engine.connect() as conn:
            setting = conn.execute(text("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")).scalar()
    except Exception:  # unreachable: schema_problem says so
        return None
    if int(setting) == asked:
        return None
    return (f"{STATEMENT_TIMEOUT_PROBLEM} {setting} ms, not the {asked} ms of DATABASE_STATEMENT_TIMEOUT_SECONDS "
            "(a pooler such as PgBouncer dropped libpq's options, ignore_startup_parameters): set "
            "FLASK_DATABASE_STATEMENT_TIMEOUT_SECONDS=0 and bound statements on the role instead "
            "(ALTER ROLE <role> SET statement_timeout = '30s')")


def attach_migrate(app: Flask) -> None:
    """Register Flask-Migrate: the `db` command group, and the settings its commands and env.py read.

    It imports Alembic, so only the flask command and ensure_schema call this, never a serving worker.
    """
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)


class _MigrateCommands(click.Group):
    """`flask db`: Flask-Migrate's group, attached (with Alembic) when a `db` command is parsed.

    FlaskGroup finds it with the app's context pushed; parsing its arguments hands them to the
    real group, which click then runs (Group.invoke runs the context's command)."""

    def make_context(self, info_name, args, parent=None, **extra):
        app = current_application()
        if args and args[0] in _READS_THE_REVISION:
            _refuse_a_newer_schema("run this command with the release that upgraded it")
        attach_migrate(app)  # replaces this stand-in in app.cli with the real group
        return app.cli.commands["db"].make_context(info_name, args, parent=parent, **extra)


#: the `db` commands that start from the database's revision: Alembic fails them on one it does
#: not know ("Can't locate revision identified by ..."), after its INFO lines
_READS_THE_REVISION = frozenset({"upgrade", "downgrade", "current", "check"})


def _refuse_a_newer_schema(what_to_do: str) -> None:
    """One line, exit 1, when a newer release's migrations have run (the previous release's command
    during a rolling update); an unreachable database is left to the command's own error."""
    try:
        current = current_revision()
    except Exception:
        return
    if current is not None and current not in known_revisions():
        raise click.ClickException(_newer_schema(current, what_to_do))


@event.listens_for(Engine, "do_connect")
def _private_sqlite_file(dialect, _record, cargs, cparams):
    """Create a new SQLite database file readable by its owner only (0600), as instance/secret_key is.

    sqlite3 would create it with the umask's mode (usually 0644: world-readable password hashes
    and refresh-token hashes). SQLite gives the -wal and -shm files the main file's mode, so they
    are private too. A file that already exists keeps the mode its operator gave it.
    """
    if dialect.name != "sqlite" or not cargs:
        return
    path = cargs[0]
    if isinstance(path, str) and cparams.get("uri"):  # a URI filename: file:/path?mode=rwc...
        path = _uri_filename_path(path)
    if not isinstance(path, str) or path in ("", ":memory:") or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # another process created it first, or no such folder: sqlite3 answers as before
        pass


def _uri_filename_path(filename: str) -> str | None:
    """The file a SQLite URI filename opens and may create, or None: a read-only or in-memory one
    (mode=ro, mode=memory, a vfs of its own) creates no file."""
    from urllib.parse import parse_qs, urlsplit

    from ..store.connection import uri_filename_path

    options = parse_qs(urlsplit(filename).query) if filename.startswith("file:") else {}
    if options.get("mode", [""])[-1] in ("ro", "memory") or "vfs" in options:
        return None
    return uri_filename_path(filename)


#: seconds a serving process waits for PostgreSQL to accept a new connection (libpq's connect_timeout)
CONNECT_TIMEOUT_SECONDS = 10


@event.listens_for(Engine, "do_connect")
def _bounded_connect(dialect, _record, _cargs, cparams):
    """A serving process gives up connecting to PostgreSQL after CONNECT_TIMEOUT_SECONDS, unless
    the URI (`?connect_timeout=`) or the engine's connect_args say otherwise. libpq waits without
    end by default: a database that accepts and never answers (a hung host or pooler) held each
    worker's start-up check, and then every /readyz probe, forever, with nothing logged.
    Operator commands are not bounded, as for the statement timeout."""
    from ..config.startup import serves_requests

    if dialect.name == "postgresql" and "connect_timeout" not in cparams and serves_requests():
        cparams["connect_timeout"] = CONNECT_TIMEOUT_SECONDS


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """WAL lets readers and one writer work at once; foreign keys make cascades work."""
    sqlite3 = sys.modules.get("sqlite3")  # imported by SQLAlchemy's SQLite dialect; a PostgreSQL worker never loads it
    if sqlite3 is not None and isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


_IDENTIFIER = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _revision_ids(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _read_migrations() -> tuple[frozenset, frozenset]:
    """Every migration's revision, and every revision another one follows, from the `revision = ...`
    and `down_revision = ...` lines of the migration files (what Alembic's ScriptDirectory finds,
    without importing Alembic)."""
    revisions, parents = set(), set()
    for path in VERSIONS_DIR.glob("*.py"):
        found = {name: ast.literal_eval(value) for name, value in _IDENTIFIER.findall(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            continue
        revisions.add(found["revision"])
        parents.update(_revision_ids(found.get("down_revision")))
    return frozenset(revisions), frozenset(parents)


@lru_cache(maxsize=1)
def known_revisions() -> frozenset:
    """Every migration's revision."""
    return _read_migrations()[0]


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration (the one no other follows)."""
    revisions, parents = _read_migrations()
    heads = set(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the migrations in {VERSIONS_DIR} must have one head, not {sorted(heads)}")
    return heads.pop()


def current_revision() -> str | None:
    """The revision recorded in the database (None for a database Alembic never touched)."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        heads = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:  # unmerged branches: never the single head this code expects
        return ", ".join(sorted(heads))
    return heads[0] if heads else None


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


def ensure_schema(*, standard_resources: bool = True) -> None:
    """Create or upgrade the schema, then (unless told not to) make sure the standard scopes exist.

    The seed command adds them itself, in its own transaction, so its report counts them.
    """
    from .resources import ensure_standard_resources

    current = current_revision()
    if current is not None and current not in known_revisions():
        # a newer release's migrations have run (a rolling update): upgrading to this code's head
        # failed in Alembic's words ("Can't locate revision identified by ..."), after its log lines
        raise click.ClickException(_newer_schema(current, "run this command with the release that upgraded it"))
    if current != head_revision():
        from flask_migrate import upgrade

        attach_migrate(current_application())  # upgrade and env.py read app.extensions["migrate"]
        with _logging_kept():
            upgrade(directory=MIGRATIONS_DIR)
    if not standard_resources:
        return
    try:
        if ensure_standard_resources():
            db.session.commit()
    except IntegrityError:  # another command added them at the same moment: take theirs
        db.session.rollback()
        if ensure_standard_resources():
            db.session.commit()


#: What PgBouncer answers a connection that carries libpq's `options` (the statement_timeout of
#: DATABASE_STATEMENT_TIMEOUT_SECONDS, or the URI's own): it refuses every one of them
POOLER_REFUSES_OPTIONS = "unsupported startup parameter: options"
POOLER_PROBLEM = "database connection refused"


def schema_problem(*, detail: bool = False) -> str | None:
    """Return why the server must not serve (schema missing or old), or None. With `detail`, an
    unreachable database is named by the driver's first line (for the log: it names the host,
    port and user, never the URI's password), not only by the error's class (for /readyz's body,
    which anyone may read)."""
    try:
        current = current_revision()
    except Exception as err:  # unreachable database
        if POOLER_REFUSES_OPTIONS in str(err):
            return (f"{POOLER_PROBLEM}: {POOLER_REFUSES_OPTIONS} (a pooler such as PgBouncer passes no libpq "
                    "options, and the statement_timeout of DATABASE_STATEMENT_TIMEOUT_SECONDS is one): set "
                    "FLASK_DATABASE_STATEMENT_TIMEOUT_SECONDS=0 and bound statements on the role instead "
                    "(ALTER ROLE <role> SET statement_timeout = '30s'), and drop `options` from the URI")
        reason = type(err).__name__
        if detail and isinstance(err, DBAPIError):
            reason = (str(err.orig or err).strip().splitlines() or [reason])[0]
        return f"database unreachable: {reason}"
    if current is not None and current not in known_revisions():
        # upgraded by a newer release (or another branch): `db upgrade` here cannot find it
        return _newer_schema(current, "serve it with the code that upgraded it, or downgrade it with that code")
    if current != head_revision():
        return f"database schema is out of date (at {current or 'nothing'}, need {head_revision()}): run `{UPGRADE_COMMAND}`"
    return None


#: how schema_problem's reason for a schema a newer release upgraded begins
NEWER_SCHEMA = "database schema is at"


def _newer_schema(current: str, what_to_do: str) -> str:
    """Why a schema a newer release (or another branch) upgraded cannot be served or upgraded here."""
    return (f"{NEWER_SCHEMA} {current}, a revision this code does not know (its newest is {head_revision()}): "
            f"{what_to_do}")


#: app.extensions key: this process has found the schema at its own head (so it serves)
_SERVED_CURRENT = "identity_schema_served_current"


#: set by gunicorn.conf.py and granian_server.py: a directory made at the server's start (removed at
#: its exit), where a worker that found the schema current leaves SERVED_MARKER
SERVER_STATE_DIR = "PORTCULLIS_SERVER_STATE_DIR"
SERVED_MARKER = "served"


def _mark_server_served() -> None:
    directory = os.environ.get(SERVER_STATE_DIR)
    if directory:
        try:
            open(os.path.join(directory, SERVED_MARKER), "a").close()
        except OSError:  # gone: this worker's successors are refused a newer schema, as at a start
            pass


def _server_has_served() -> bool:
    """Whether a worker of this server (this start of gunicorn or granian) found the schema current."""
    directory = os.environ.get(SERVER_STATE_DIR)
    return bool(directory) and os.path.exists(os.path.join(directory, SERVED_MARKER))


def readiness_problem() -> str | None:
    """schema_problem as /readyz judges it: a process that has found the schema at its own head
    stays ready once a newer release's migrations have run (a rolling update: the migration job
    runs first, then the new instances replace the old ones, which keep serving meanwhile).
    Answering 503 there took every old instance out of service before a new one was ready. A
    process that never found it current (it started while the database was away) is not ready."""
    problem = schema_problem()
    if problem is None:
        current_app.extensions[_SERVED_CURRENT] = True
    elif problem.startswith(NEWER_SCHEMA) and current_app.extensions.get(_SERVED_CURRENT):
        return None
    return problem


def check_schema_on_start(app: Flask) -> None:
    """Refuse to serve against a missing or old schema, naming the command that fixes it.

    CLI commands (other than `run`) upgrade the schema themselves, so they are let through.
    """
    if app.config.get("TESTING"):
        return
    from ..config.startup import serves_requests

    if not serves_requests():
        return
    with app.app_context():
        problem = schema_problem(detail=True) or statement_timeout_problem()
    if problem is None:
        app.extensions[_SERVED_CURRENT] = True
        _mark_server_served()
    elif problem.startswith(NEWER_SCHEMA) and _server_has_served():
        # a worker replacing one of a server that serves (a reload, a recycle, a crash) while a
        # rolling update's migrations have run: the server keeps serving until it is replaced
        app.logger.warning("%s; serving on, as this server's workers did before that upgrade (a rolling "
                           "update: a new start of this release is refused)", problem)
        app.extensions[_SERVED_CURRENT] = True
        return
    if problem and problem.startswith(("database schema", POOLER_PROBLEM, STATEMENT_TIMEOUT_PROBLEM)):
        print(f"{app.config['PRODUCT_NAME']}: {problem}", file=sys.stderr)
        raise SystemExit(3)  # gunicorn's "worker failed to boot": the master stops instead of respawning
    if problem:
        app.logger.warning("%s; serving 503 until it is reachable", problem)
