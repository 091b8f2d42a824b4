"""What a serving worker keeps in memory: no Alembic, one of zxcvbn's lists, Argon2's work area
only while it hashes (issue 6: a worker under 100 MB)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app import create_app
from conftest import make_config
from identity.services import schema
from identity.services.schema import MIGRATIONS_DIR, current_revision, ensure_schema, head_revision
from identity.extensions import db
from identity.services import passwords
from servers import ROOT, flask_cli, server_env

# --- the schema check without Alembic ---------------------------------------------------------------


def test_head_revision_is_alembics_head():
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


def _versions(tmp_path, files: dict[str, str]):
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    return tmp_path


def test_head_revision_reads_typed_and_merge_migrations(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "VERSIONS_DIR", _versions(tmp_path, {
        "a.py": "revision = 'aaa'\ndown_revision = None\n",
        "b.py": "revision: str = 'bbb'\ndown_revision: Union[str, None] = 'aaa'\n",
        "c.py": '"""Revision ID: ccc\nRevises: aaa\n"""\nrevision = "ccc"\ndown_revision = "aaa"\n',
        "d.py": "revision = 'ddd'\ndown_revision = ('bbb', 'ccc')\n\ndef upgrade():\n    revision = 'not this'\n",
        "README": "revision = 'not a migration'\n",
    }))
    assert head_revision.__wrapped__() == "ddd"


def test_head_revision_refuses_two_heads(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "VERSIONS_DIR", _versions(tmp_path, {
        "a.py": "revision = 'aaa'\ndown_revision = None\n",
        "b.py": "revision = 'bbb'\ndown_revision = 'aaa'\n",
        "c.py": "revision = 'ccc'\ndown_revision = 'aaa'\n",
    }))
    with pytest.raises(RuntimeError, match="one head"):
        head_revision.__wrapped__()


def test_current_revision_reads_what_alembic_reads(tmp_path):
    app = create_app(make_config("sqlite:///" + str(tmp_path / "own.db")))
    try:
        with app.app_context():
            assert current_revision() is None, "a database Alembic never touched"
            ensure_schema()
            with db.engine.connect() as conn:
                assert current_revision() == MigrationContext.configure(conn).get_current_revision() == head_revision()
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = 'aaaaaaaaaaaa'"))
            assert current_revision() == "aaaaaaaaaaaa"
            assert "at aaaaaaaaaaaa, a revision this code does not know" in schema.schema_problem()
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM alembic_version"))
            assert current_revision() is None
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def assert_script_passes_in_a_fresh_worker(script: str, database: Path) -> None:
    """Run `script` in a new interpreter, as a serving worker would start, on a migrated SQLite
    database: its modules are only what it imports itself. It must print "ok"."""
    env = server_env("sqlite:///" + str(database))
    flask_cli(["db", "upgrade"], env)
    _passes_in_a_new_interpreter(script, env)


def assert_script_passes_on_the_suites_postgresql(app, script: str) -> None:
    """The same on the suite's PostgreSQL database (already migrated by the `app` fixture)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if not uri.startswith("postgresql"):
        pytest.skip("the suite runs on SQLite (FLASK_SQLALCHEMY_DATABASE_URI names no PostgreSQL database)")
    _passes_in_a_new_interpreter(script, server_env(uri))


def _passes_in_a_new_interpreter(script: str, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


# a worker's start and its first page, as the scripts below begin
WORKER_START = """
import sys
import app
served = app.create_app()
client = served.test_client()
assert client.get("/account/login").status_code == 200
"""


SERVING_IMPORTS = """
import sys
import app
served = app.create_app()
assert not served.config["TESTING"]
assert "migrate" not in served.extensions and "db" not in served.cli.commands
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "flask_migrate", "mako", "pygments", "zxcvbn"))
assert not heavy, heavy
with served.test_request_context():
    from identity.services.password_policy import password_problems
    problems = password_problems("passwordpassword")
    assert problems and problems[0].startswith("This password is easy to guess"), problems
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "flask_migrate", "mako", "pygments"))
assert not heavy, heavy
assert "zxcvbn.matching" in sys.modules, "a password check loads zxcvbn, on first use"
print("ok")
"""


@pytest.mark.server
def test_serving_imports_neither_alembic_nor_zxcvbn_until_a_password_is_checked(tmp_path):
    """create_app() as a gunicorn worker calls it: the start-up schema check runs, Alembic stays out;
    zxcvbn (3.0 MiB with its packed dictionaries) is loaded by the first password check, not by sign-in."""
    assert_script_passes_in_a_fresh_worker(SERVING_IMPORTS, tmp_path / "serving.db")


CLI_IMPORTS = """
import contextlib, io, sys
from flask.cli import cli
def flask(*args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        cli.main(args=["--app", "app", *args], prog_name="flask", standalone_mode=False)
    return out.getvalue()
assert "IdentityServerApi" in flask("scopes", "list")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "flask_migrate", "mako"))
assert not heavy, heavy
assert "(head)" in flask("db", "heads")
assert "alembic" in sys.modules and "flask_migrate" in sys.modules
print("ok")
"""


@pytest.mark.server
def test_operator_commands_but_db_import_no_alembic(tmp_path):
    """`flask scopes list` (any command but `flask db ...`) starts without Flask-Migrate, Alembic and
    Mako (0.2 s of each command's start); `flask db heads` loads them and answers."""
    assert_script_passes_in_a_fresh_worker(CLI_IMPORTS, tmp_path / "cli-imports.db")


PASSKEY_IMPORTS = WORKER_START + """
import json
assert client.post("/connect/token", data={"grant_type": "client_credentials"}).status_code == 401
assert client.get("/.well-known/openid-configuration").status_code == 200
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("webauthn", "pyasn1", "cbor2", "OpenSSL", "segno", "xml", "apispec"))
assert not heavy, heavy
assert served.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
assert "sqlalchemy.dialects.postgresql" not in sys.modules, "a SQLite worker needs no PostgreSQL dialect"
with served.test_request_context():
    from identity.services import passkeys
    ceremony = passkeys.authentication_options("https://id.example.test")
assert json.loads(ceremony.options)["rpId"] == "id.example.test"
assert "webauthn" in sys.modules, "a passkey ceremony loads py_webauthn, on first use"
from identity.services import mfa
assert mfa.qr_svg("otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP").startswith("<svg")
assert "segno" in sys.modules, "a TOTP enrolment's QR code loads segno, on first use"
assert client.get("/localapi/openapi.json").status_code == 401, "the document is for bearers of a token"
from api.openapi import openapi_document
assert openapi_document()["openapi"] == "3.1.0"
assert "apispec" in sys.modules, "the OpenAPI document loads apispec, on first use"
print("ok")
"""


@pytest.mark.server
def test_serving_imports_py_webauthn_and_segno_only_when_used(tmp_path):
    """py_webauthn with its ASN.1, CBOR and pyOpenSSL parts (~5 MiB, ~0.1 s of start-up) is loaded
    by the first passkey ceremony, segno (~1 MiB) by the first QR code and apispec (0.3 MiB) by the
    first request for the OpenAPI document, not by a worker's start, its pages or its token
    endpoint; nor is SQLAlchemy's PostgreSQL dialect, on SQLite."""
    assert_script_passes_in_a_fresh_worker(PASSKEY_IMPORTS, tmp_path / "passkey-imports.db")


MAIL_IMPORTS = WORKER_START + """
assert client.post("/connect/token", data={"grant_type": "client_credentials"}).status_code == 401
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("flask_mail", "smtplib"))
assert not loaded, loaded
from identity.services import mail
with served.test_request_context("/"):
    assert mail.send("alice@example.test", "password_reset", link="https://id.example.test/x",
                     name="Alice", username="alice", lifetime="30 minutes") is True
assert "flask_mail" in sys.modules and "smtplib" in sys.modules, "the first mail loads Flask-Mail"
print("ok")
"""


@pytest.mark.server
def test_serving_imports_flask_mail_only_when_it_mails(tmp_path, mail):
    """Flask-Mail and smtplib (0.8 MiB of a worker) are loaded by the first mail, which then
    reaches the SMTP server the worker's settings name; not by a worker's start or its pages."""
    assert_script_passes_in_a_fresh_worker(MAIL_IMPORTS, tmp_path / "mail-imports.db")
    [message] = mail.to("alice@example.test")
    assert "https://id.example.test/x" in mail.text(message)


@pytest.mark.server
def test_flask_db_commands_still_work(tmp_path):
    env = server_env("sqlite:///" + str(tmp_path / "cli.db"))
    assert flask_cli(["db", "current"], env).stdout.strip() == ""
    flask_cli(["db", "upgrade"], env)
    assert flask_cli(["db", "current"], env).stdout.split() == [head_revision(), "(head)"]
    assert flask_cli(["db", "heads"], env).stdout.split() == [head_revision(), "(head)"]


# --- Argon2's work area goes back to the OS when hashing pauses -----------------------------------------


class FakeTrim:
    def __init__(self):
        self.calls = 0
        self.called = threading.Event()

    def __call__(self, pad):
        assert pad == 0
        self.calls += 1
        self.called.set()
        return 1


def test_memory_is_trimmed_once_hashing_pauses(monkeypatch):
    trim = FakeTrim()
    monkeypatch.setattr(passwords, "_malloc_trim", lambda: trim)
    trimmer = passwords._IdleTrimmer(idle_seconds=0.5)

    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # steady hashing: never idle for 0.5 s
        trimmer.hashed()
        time.sleep(0.02)
    assert trim.calls == 0, "trimmed under load"

    assert trim.called.wait(5), "not trimmed after hashing stopped"
    time.sleep(0.5)
    assert trim.calls == 1, "trimmed once per pause"

    trimmer.hashed()
    deadline = time.monotonic() + 5
    while trim.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trim.calls == 2, "the next pause trims again"


def _wake_ups(thread: threading.Thread) -> int:
    """How often the kernel has woken the thread (its voluntary context switches)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux's /proc")
def test_a_hash_does_not_wake_the_trim_thread(monkeypatch):
    """A hash only notes its time: waking the thread on each one cost a thread switch and a turn
    of the interpreter per hash (1.5% of a worker under a load of password changes)."""
    trim = FakeTrim()
    monkeypatch.setattr(passwords, "_malloc_trim", lambda: trim)
    trimmer = passwords._IdleTrimmer(idle_seconds=0.5)
    trimmer.hashed()
    thread = next(t for t in threading.enumerate() if t.name == "argon2-memory-trim" and t.native_id)
    before = _wake_ups(thread)
    for _ in range(300):
        trimmer.hashed()
        time.sleep(0.002)
    assert _wake_ups(thread) - before < 30
    assert trim.called.wait(5) and trim.calls == 1


def test_no_thread_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(passwords, "_malloc_trim", lambda: None)
    trimmer = passwords._IdleTrimmer(idle_seconds=0.1)
    trim_threads = lambda: sum(t.name == "argon2-memory-trim" for t in threading.enumerate())  # noqa: E731
    before = trim_threads()
    trimmer.hashed()
    trimmer.hashed()
    assert trim_threads() == before


IDLE_RSS = """
import time
from flask import Flask
import identity.config.defaults
from identity.services import passwords

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

app = Flask("idle")
app.config.from_object(identity.config.defaults)
with app.app_context():
    stored = passwords.hash_password("amber-lantern-meadow-4821")
    for _ in range(3):
        passwords.verify_password(stored, "amber-lantern-meadow-4821")
    busy = rss_mib()
    deadline = time.monotonic() + 10
    while rss_mib() > busy - 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    print(busy, rss_mib())
"""


@pytest.mark.skipif(passwords._malloc_trim() is None, reason="no glibc malloc_trim")
def test_an_idle_process_gives_argon2s_memory_back():
    result = subprocess.run([sys.executable, "-c", IDLE_RSS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    busy, idle = map(float, result.stdout.split())
    assert busy - idle >= 10, f"RSS {busy:.1f} MiB after hashing, {idle:.1f} MiB once idle"


POSTGRESQL_WORKER_IMPORTS = WORKER_START + """
assert client.post("/connect/token", data={"grant_type": "client_credentials"}).status_code == 401
assert client.get("/readyz").status_code == 200
assert served.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] in ("sqlite3", "_sqlite3") or m.startswith("sqlalchemy.dialects.sqlite"))
assert not loaded, loaded
print("ok")
"""


@pytest.mark.server
def test_a_postgresql_worker_loads_no_sqlite(app):
    """sqlite3 (with libsqlite3, ~0.9 MiB of a worker) is only for SQLite: the connect hook that sets
    SQLite's pragmas looks for it among the loaded modules rather than importing it. Nor SQLAlchemy's
    SQLite dialect (0.66 MiB): a table's `sqlite_*` option makes SQLAlchemy load it to check it."""
    assert_script_passes_on_the_suites_postgresql(app, POSTGRESQL_WORKER_IMPORTS)


POSTGRESQL_C_WORKER = WORKER_START + """
import psycopg
assert client.get("/readyz").status_code == 200
assert psycopg.pq.__impl__ == "c", psycopg.pq.__impl__
maps = open("/proc/self/maps").read()
assert "psycopg_binary" not in maps, "psycopg-binary's own libpq and OpenSSL are loaded"
print("ok")
"""


@pytest.mark.server
def test_with_the_postgresql_c_extra_a_worker_maps_one_libpq_and_one_openssl(app):
    """`pip install '.[postgresql-c]'` (docs/deployment.md): psycopg takes its C implementation, on
    the system's libpq, and a worker maps neither psycopg-binary's libpq nor its copy of OpenSSL
    (2 MiB of every worker). CI runs this in a stage of its own, with the extra installed."""
    if os.environ.get("IDENTITY_TEST_PSYCOPG_IMPL") != "c":
        pytest.skip("for the PostgreSQL suite with the postgresql-c extra (IDENTITY_TEST_PSYCOPG_IMPL=c)")
    assert_script_passes_on_the_suites_postgresql(app, POSTGRESQL_C_WORKER)
