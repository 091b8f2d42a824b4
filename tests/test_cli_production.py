"""The operator's commands on a production configuration, run as the docs write them:
`.venv/bin/flask --app app ...` in a subprocess, FLASK_ENVIRONMENT=production, no secret key.

A command that serves nothing does not need the secret key; a setting that is missing or wrong
is one line naming it (click's `Error: ...`, exit 1), never a traceback. A server that starts
without a setting it needs says so in one line and stops.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from servers import ROOT, GunicornServer, server_env

pytestmark = pytest.mark.server

FLASK = Path(sys.executable).parent / "flask"  # the venv's flask, as the docs say
GOOD_PASSWORD = "lantern-orchid-meadow-5531"


def production_env(database_uri: str, **extra: str) -> dict[str, str]:
    env = server_env(database_uri, extra={"FLASK_ENVIRONMENT": "production", **extra})
    del env["FLASK_SECRET_KEY"]
    return env


def flask(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLASK), "--app", "app", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(app):
    """The test database (SQLite or PostgreSQL), emptied by the `app` fixture; a key-encryption key
    (the keys commands need it), no secret key."""
    return production_env(app.config["SQLALCHEMY_DATABASE_URI"], FLASK_KEY_ENCRYPTION_KEY=Fernet.generate_key().decode())


COMMANDS = {
    "clients list": (["clients", "list"], None),
    "users list": (["users", "list"], None),
    "scopes list": (["scopes", "list"], None),
    "keys list": (["keys", "list"], None),
    "audit tail": (["audit", "tail"], None),
    "seed": (["seed", "demo/seed.json"], None),
    "users add": (["users", "add", "bob"], GOOD_PASSWORD + "\n"),
    "db upgrade": (["db", "upgrade"], None),
}


@pytest.mark.parametrize("args, stdin", COMMANDS.values(), ids=COMMANDS.keys())
def test_commands_run_in_production_without_a_secret_key(env, args, stdin):
    result = flask(args, env, stdin)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "SECRET_KEY" not in result.stderr


@pytest.mark.database_independent  # refused on its settings before it opens the database
def test_the_keys_commands_name_a_missing_key_encryption_key_in_one_line(app):
    env = production_env(app.config["SQLALCHEMY_DATABASE_URI"])
    result = flask(["keys", "list"], env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: KEY_ENCRYPTION_KEY is required in production: set FLASK_KEY_ENCRYPTION_KEY to a Fernet key "
        "(docs/signing-keys.md) or FLASK_ENVIRONMENT=development for a local demo"]


def test_clients_list_lists_the_seeded_clients_in_production(env):
    assert flask(["seed", "demo/seed.json"], env).returncode == 0

    result = flask(["clients", "list"], env)

    assert result.returncode == 0, result.stderr
    seeded = sorted(c["client_id"] for c in json.loads((ROOT / "demo" / "seed.json").read_text())["clients"])
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == seeded


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


@pytest.mark.database_independent  # refused on its settings before it opens the database
def test_flask_run_without_a_secret_key_is_one_line(env):
    line = one_line_error(flask(["run", "--port", "0"], env))

    assert "SECRET_KEY" in line and "FLASK_SECRET_KEY" in line


@pytest.mark.database_independent  # refused on its settings before it opens the database
def test_a_wrong_setting_is_one_line_naming_it(env):
    line = one_line_error(flask(["clients", "list"], {**env, "FLASK_ACCESS_TOKEN_SIGNING_ALG": "HS256"}))

    assert "ACCESS_TOKEN_SIGNING_ALG" in line and "HS256" in line


@pytest.mark.database_independent  # refused on its settings before it opens the database
def test_gunicorn_without_a_secret_key_says_so_in_one_line_and_stops(tmp_path, env):
    server = GunicornServer("sqlite:///" + str(tmp_path / "unused.db"), workers=1, name="nokey",
                            migrate_first=False, log_dir=tmp_path, start_timeout=30,
                            env={"FLASK_ENVIRONMENT": "production"})
    del server.env["FLASK_SECRET_KEY"]

    with pytest.raises(Exception) as failure:
        server.start()

    log = server.log(tail=200)
    assert "exited with 3" in str(failure.value), f"gunicorn kept running or exited otherwise:\n{log}"
    assert "SECRET_KEY is required in production: set FLASK_SECRET_KEY" in log, log
    assert "Traceback" not in log, log


def test_a_command_in_production_without_a_mail_server_does_not_pretend_to_mail(env):
    """The outbox (instance/outbox/) stands in for SMTP in development only (CONTRACT.md). A command
    in production without FLASK_MAIL_SERVER (the server needs one; a command does not) wrote the
    user's 'your password was changed' notice to a file on the operator's machine and audited it as
    mail_sent: nobody was told, and the audit log said they were."""
    env = {k: v for k, v in env.items() if not k.startswith("FLASK_MAIL_")}
    outbox = ROOT / "instance" / "outbox"
    before = set(outbox.iterdir()) if outbox.exists() else set()
    assert flask(["seed", "demo/seed.json"], env).returncode == 0

    result = flask(["users", "set-password", "alice"], env, "another-long-passphrase-71\n")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in flask(["audit", "tail", "-n", "3"], env).stdout.splitlines()]
    assert [e["event"] for e in events][-2:] == ["password_set", "mail_failed"], events
    assert (set(outbox.iterdir()) if outbox.exists() else set()) == before


@pytest.mark.database_independent  # a SQLite file of its own, which it must not create
@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "rotate"], ["keys", "reencrypt"]], ids=" ".join)
def test_a_missing_setting_stops_a_command_before_it_touches_the_database(tmp_path, command):
    """`requires_settings`: the setting is checked "before the command does anything" (docs/cli.md);
    the keys commands created and migrated a brand-new database first, then refused."""
    database = tmp_path / "untouched.db"
    line = one_line_error(flask(command, production_env("sqlite:///" + str(database))))

    assert "KEY_ENCRYPTION_KEY" in line
    assert not database.exists()
