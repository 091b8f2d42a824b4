"""An operator's second year: settings read at start, odd arguments to the commands, upgrades.

Each test is a defect found by running the server as its docs say and meeting a traceback, a
broken page or a changed database where the docs promise one line and nothing changed."""

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from identity.config.startup import ConfigurationError
from test_migration_sessions import scratch_uri  # noqa: F401  (the fixture: a database of its own)

KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()


def _environment_config(instance, monkeypatch, **env):
    """What a server started with these FLASK_* variables is given (the rest as test_config's make)."""
    for name, value in env.items():
        monkeypatch.setenv(f"FLASK_{name}", value)
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
              "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": "https://id.example.test",
              "MAIL_SERVER": "smtp.example.test", "SECRET_KEY": "k" * 32}
    for name in env:
        config.pop(name, None)  # the environment's value, as JSON made it
    return config


@pytest.mark.parametrize("setting, value", [
    ("PASSWORD_MIN_GUESSES_LOG10", "NaN"), ("LOG_REQUESTS_FLUSH_SECONDS", "NaN"),
    ("CLIENT_CACHE_SECONDS", "NaN"), ("RATELIMIT_STORAGE_TIMEOUT_SECONDS", "Infinity"), ("BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS", "NaN"),
    ("CORS_ORIGINS_CACHE_SECONDS", "NaN"), ("PURGE_INTERVAL_SECONDS", "Infinity"), ("MAIL_TIMEOUT_SECONDS", "NaN"),
])
def test_a_numeric_setting_of_nan_or_infinity_is_refused_at_start(instance, monkeypatch, setting, value):
    """FLASK_* values are read as JSON by Python's json, which takes NaN and Infinity: they passed
    every "at least" check (NaN compares false with everything). PASSWORD_MIN_GUESSES_LOG10=NaN
    started a server that refused no guessable password (`guesses < NaN` is never true), and
    CLIENT_CACHE_SECONDS=NaN one whose `clients disable` returned at once (max(0, nan) is 0),
    before the workers' copies of the client had expired."""
    with pytest.raises(ConfigurationError, match=setting):
        create_app(_environment_config(instance, monkeypatch, **{setting: value}))


@pytest.mark.parametrize("setting, value", [
    ("SESSION_COOKIE_SAMESITE", "Strictt"), ("SESSION_COOKIE_SAMESITE", "1"), ("REMEMBER_COOKIE_SAMESITE", "lox"),
    ("SESSION_COOKIE_NAME", "123"), ("SESSION_COOKIE_NAME", '""'), ("REMEMBER_COOKIE_NAME", "id srv;x"),
    ("REMEMBER_COOKIE_NAME", '"idsrv.session"'),
])
def test_a_cookie_setting_a_browser_cannot_be_sent_is_refused_at_start(instance, monkeypatch, setting, value):
    """configuration.md lists the cookies' names and SameSite values: a wrong one started the server,
    and then every page that set the session cookie answered 500 (werkzeug: "SameSite must be
    'Strict', 'Lax', or 'None'"; FLASK_SESSION_COOKIE_NAME=123 arrives as a number: 'int' object
    has no attribute 'encode'), or every "keep me signed in" sign-in did."""
    with pytest.raises(ConfigurationError, match=setting):
        create_app(_environment_config(instance, monkeypatch, **{setting: value}))


def test_the_documented_cookie_settings_are_accepted(instance, monkeypatch):
    app = create_app(_environment_config(instance, monkeypatch, SESSION_COOKIE_SAMESITE="Strict",
                                         REMEMBER_COOKIE_SAMESITE="lax", SESSION_COOKIE_NAME="__Host-id"))
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-id"


# the bytes a UTF-8 locale could not decode (a Latin-1 terminal, a script's bad variable) reach
# the command as lone surrogates: sys.argv's "surrogateescape"
NOT_UTF8 = "\udcff"


@pytest.mark.parametrize("args", [
    ["users", "disable", f"al{NOT_UTF8}ice"], ["users", "mfa-reset", NOT_UTF8], ["sessions", "list", f"al{NOT_UTF8}ice"],
    ["clients", "remove", NOT_UTF8], ["clients", "disable", f"sp{NOT_UTF8}a"],
    ["scopes", "add", "reports", "--display-name", f"Rep{NOT_UTF8}orts"],
    ["clients", "update", "service", "--backchannel-logout-uri", f"https://rp.example.com/{NOT_UTF8}"],
])
def test_an_argument_that_is_not_utf8_is_one_error_line_and_changes_nothing(app, seeded, runner, args):
    """cli.md: an error is one line, `Error: ...`, exit code 1. An argument with bytes that are
    not UTF-8 was a UnicodeEncodeError traceback from the database driver instead."""
    from identity.models import ApiScope, Client

    result = runner.invoke(args=args)
    assert result.exit_code == 1 and not isinstance(result.exception, UnicodeError), result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "not UTF-8" in result.output
    with app.app_context():
        from identity.extensions import db
        assert db.session.query(ApiScope).filter_by(name="reports").count() == 0
        assert db.session.query(Client).filter_by(client_id="service").one().backchannel_logout_uri is None


def test_a_seed_number_too_long_to_read_is_one_error_line(app, runner, tmp_path):
    """cli.md: a seed file that breaks a rule is one Error: line. A number of more than 4300 digits
    (Python's limit on reading one) was json's ValueError traceback."""
    path = tmp_path / "seed.json"
    path.write_text('{"clients": [{"client_id": "c", "access_token_lifetime": ' + "9" * 5000 + "}]}")
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code == 1 and not isinstance(result.exception, ValueError), result.output
    assert result.output.startswith("Error: file: not valid JSON") and result.output.count("\n") == 1


@pytest.mark.parametrize("setting, value", [
    ("ISSUER", "123"), ("SQLALCHEMY_ENGINE_OPTIONS", "pool_size=2"), ("SQLALCHEMY_ENGINE_OPTIONS", '{"pool_sizee": 2}'),
    ("RATELIMIT_STORAGE_OPTIONS", "socket_timeout=1"), ("MAIL_DEFAULT_SENDER", "5"),
])
def test_a_setting_of_the_wrong_kind_is_one_line_at_start_not_a_traceback(instance, monkeypatch, setting, value):
    """configuration.md: a value that is not what a setting takes stops the server and every command
    with one line naming the setting, never a traceback. FLASK_ISSUER=123 (read as a number) was an
    AttributeError from urlsplit, FLASK_SQLALCHEMY_ENGINE_OPTIONS (deployment.md's pool settings)
    and FLASK_RATELIMIT_STORAGE_OPTIONS that are not JSON objects a ValueError, a misspelled engine
    option SQLAlchemy's TypeError; FLASK_MAIL_DEFAULT_SENDER=5 started a server that sent no mail."""
    config = _environment_config(instance, monkeypatch, **{setting: value})
    with pytest.raises(ConfigurationError, match=setting):
        create_app(config)


def _answering_server(answer: bytes) -> int:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_clients_logout_answer_cannot_write_lines_into_the_log():
    """deployment.md: ship the log by parsing each line that starts with `{` as JSON. A failed
    back-channel delivery is logged (and audited) with the start of the client's answer: an answer
    with a line break wrote a line of the client's choosing, a forged JSON request line."""
    from identity.services.logout_delivery import post_logout_token

    forged = b'x\n{"request_id": "f", "method": "POST", "path": "/x", "status": 200}\r\x1b[2J'
    port = _answering_server(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(forged), forged))
    error = post_logout_token(f"http://127.0.0.1:{port}/bc", "token", timeout=2, max_bytes=4096)
    assert error.startswith("HTTP 500: x")
    assert error.isprintable(), error


def test_a_downgrade_and_upgrade_does_not_bring_a_revoked_signing_key_back(scratch_uri):
    """deployment.md offers `db downgrade` for a schema a newer release upgraded. The revision before
    staged rotation has no revoked_at: a key that `keys rotate --now` revoked (a compromised key)
    came back from downgrade and upgrade as a retired key, published in the JWKS and trusted to
    verify tokens again for its retention time."""
    import time

    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from conftest import make_config
    from identity.extensions import db
    from identity.services.schema import MIGRATIONS_DIR, _logging_kept, attach_migrate

    app = create_app(make_config(scratch_uri))

    def migrate(action, revision):
        with app.app_context():
            attach_migrate(app)
            with _logging_kept():
                action(directory=MIGRATIONS_DIR, revision=revision)
            db.session.remove()

    def run(sql):
        with app.app_context(), db.engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result) if result.returns_rows else None

    now = int(time.time())
    migrate(upgrade, "5c2e9a7d41b8")
    run("INSERT INTO signing_keys (kid, alg, generation, private_jwk, created_at, activates_at, retired_at, revoked_at) "
        f"VALUES ('compromised', 'RS256', 1, 'x', {now - 60}, {now - 60}, {now - 10}, {now - 10}), "
        f"('retired', 'RS256', 2, 'x', {now - 50}, {now - 50}, {now - 10}, NULL), "
        f"('current', 'RS256', 3, 'x', {now - 10}, {now - 10}, NULL, NULL)")
    migrate(downgrade, "a7c4e2d9b153")
    migrate(upgrade, "5c2e9a7d41b8")
    rows = {kid: revoked for kid, revoked in run("SELECT kid, revoked_at FROM signing_keys")}
    assert rows.get("compromised", "gone") is not None  # gone, or still revoked: never published again
    assert set(rows) >= {"retired", "current"}
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("setting", ["LOCKOUT_SECONDS", "PASSWORD_RESET_SECONDS", "EMAIL_VERIFICATION_SECONDS",
                                     "AUTHORIZATION_CODE_LIFETIME_SECONDS"])
def test_a_duration_past_what_the_database_stores_is_refused_at_start(instance, monkeypatch, setting):
    """Times were stored as 32-bit integers (PostgreSQL's integer, up to 2038, until e7a2c9d4b6f1;
    the 10-year bound stays). FLASK_LOCKOUT_SECONDS=
    1000000000 (a lock "until an operator unlocks it") started, and on PostgreSQL the attempt that
    should have locked the account, and every sign-in of that user after it, the right password
    too, ended in 'integer out of range' (503); a reset link or code lifetime as long made every
    forgotten-password mail or sign-in a 503."""
    with pytest.raises(ConfigurationError, match=setting):
        create_app(_environment_config(instance, monkeypatch, **{setting: "1000000000"}))


def test_two_instances_upgrading_one_new_postgresql_database_at_once_both_succeed(scratch_uri):
    """deployment.md: each instance runs `db upgrade` and `seed` before it starts, and every command
    creates or upgrades the schema itself (configuration.md). Two instances deployed at once on a
    new PostgreSQL database ran the migrations side by side: one created alembic_version first, and
    the other stopped with an IntegrityError traceback (pg_type_typname_nsp_index)."""
    import subprocess

    from servers import ROOT
    from test_cli_production import FLASK, flask, production_env

    if not scratch_uri.startswith("postgresql"):
        pytest.skip("PostgreSQL: SQLite serves one host")
    env = production_env(scratch_uri, FLASK_KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY)
    for _ in range(3):  # the race is lost or won by milliseconds: give it a few chances
        started = [subprocess.Popen([str(FLASK), "--app", "app", *args], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for args in (["db", "upgrade"], ["seed", "demo/seed.json"])]
        for process in started:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and "Traceback" not in err, err[-600:]
        assert flask(["db", "downgrade", "base"], env).returncode == 0


@pytest.mark.parametrize("uri", ["postgresql+psycopg://identity:not-this-password@127.0.0.1:1/identity",
                                 "sqlite:////nonexistent-folder/identity.db"], ids=["refused port", "no such folder"])
@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"]], ids=" ".join)
def test_db_upgrade_on_an_unreachable_database_is_one_line_not_a_traceback(uri, command):
    """cli.md: a database a command cannot reach is one line (`Error: database unreachable: ...;
    check FLASK_SQLALCHEMY_DATABASE_URI`). `db upgrade`, deployment.md's first step, printed
    Alembic's 150-line traceback instead."""
    from test_cli_production import flask, production_env

    result = flask(command, production_env(uri, FLASK_KEY_ENCRYPTION_KEY=KEY_ENCRYPTION_KEY))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-400:]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("Error: database unreachable"), result.stderr
    assert "SQLALCHEMY_DATABASE_URI" in lines[0] and "not-this-password" not in result.stderr


def test_the_apps_own_warnings_are_json_lines_with_the_request_id(database_uri, _migrated, monkeypatch, capsys):
    """deployment.md: application errors are JSON lines with the request's request_id, and a
    shipper parses each line that starts with `{`. Under gunicorn or granian nothing configures the
    root logger, so the warnings and errors of the purge, the mail sender and the logout delivery
    (loggers identity.*) reached stderr through logging's last resort: bare text, a traceback as
    many lines, and no request id."""
    import json
    import logging

    from conftest import make_config
    from identity.plumbing.headers import default_handler

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a server: no handler on the root
    monkeypatch.setattr(default_handler, "filters", list(default_handler.filters))
    monkeypatch.setattr(default_handler, "formatter", default_handler.formatter)
    for name in ("identity", "identity.requests"):  # as they were, after this test
        logger = logging.getLogger(name)
        for attribute in ("handlers", "propagate", "level"):
            value = getattr(logger, attribute)
            monkeypatch.setattr(logger, attribute, list(value) if attribute == "handlers" else value)
    app = create_app(make_config(database_uri, LOG_REQUESTS=True))  # the default
    with app.test_request_context():
        from identity.plumbing.headers import REQUEST_ID_KEY
        from flask import request

        request.environ[REQUEST_ID_KEY] = "op-review-1"
        logging.getLogger("identity.purge").warning("purge pass stopped at %s: %s", "codes", "OperationalError")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("identity.mail").exception("mail %r not handled", "password_reset")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries] == ["purge pass stopped at codes: OperationalError",
                                               "mail 'password_reset' not handled"]
    assert all(e["request_id"] == "op-review-1" for e in entries)
    assert "RuntimeError: boom" in entries[1]["traceback"]


@pytest.mark.parametrize("env", [{"MAIL_PORT": "70000"}, {"MAIL_USE_TLS": "true", "MAIL_USE_SSL": "true"}],
                         ids=["port past 65535", "STARTTLS inside TLS"])
def test_mail_settings_that_cannot_send_are_refused_at_start(instance, monkeypatch, env):
    """recovery.md's FLASK_MAIL_PORT and FLASK_MAIL_USE_TLS / _USE_SSL: a port past 65535, or both
    TLS settings on (STARTTLS asked of a connection that is TLS already, which a port-465 server
    does not offer), started a server whose every reset link and notice then failed to leave."""
    with pytest.raises(ConfigurationError, match="MAIL_"):
        create_app(_environment_config(instance, monkeypatch, **env))


def _metrics_directory_with_a_database(tmp_path, monkeypatch):
    directory = tmp_path / "instance"
    directory.mkdir()
    for name in ("counter_123.db", "gauge_livesum_123.db", "histogram_9.db", "summary_9.db"):
        (directory / name).write_bytes(b"\0" * 16)
    (directory / "identity.db").write_bytes(b"SQLite format 3\0")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    return directory


def test_gunicorn_clears_only_the_metrics_files_of_its_metrics_directory(tmp_path, monkeypatch):
    """metrics.md: with PROMETHEUS_MULTIPROC_DIR set, the start deletes the files a previous run left
    there. It deleted every *.db: given the instance folder (one directory per instance...), the
    SQLite database instance/identity.db went with them."""
    import runpy

    from servers import ROOT

    directory = _metrics_directory_with_a_database(tmp_path, monkeypatch)
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))["on_starting"](None)
    assert sorted(p.name for p in directory.iterdir()) == ["identity.db"]


def test_granian_clears_only_the_metrics_files_of_its_metrics_directory(tmp_path, monkeypatch):
    import granian_server

    directory = _metrics_directory_with_a_database(tmp_path, monkeypatch)
    granian_server.prepare_metrics_directory()
    assert sorted(p.name for p in directory.iterdir()) == ["identity.db"]
