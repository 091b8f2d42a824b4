"""Review from outside: everything the server writes about itself (its log and standard error),
read by an operator and by an attacker who gets hold of it (docs/deployment.md "Logs",
docs/security.md "Logs")."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

import mail_server
from conftest import ALICE_PASSWORD, csrf_token
from servers import ROOT, GranianServer, GunicornServer


# --- Flask-Limiter's records ------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_RESET_ACCOUNT": "1 per hour"}])
def test_a_refused_forgot_password_post_logs_no_name_typed_into_it(app, client, seeded, caplog):
    """Flask-Limiter records every refusal ("ratelimit 1 per 1 hour (reset-account:<what was typed>)
    exceeded") at INFO, with the limit's key: the forgot-password form's user name as typed (a
    password typed there by mistake too), the address given to registration. At DEBUG or INFO
    (caplog, an operator's logging config) those reached the log, which holds no such data."""
    caplog.set_level(logging.DEBUG)
    typed = ALICE_PASSWORD  # the password, typed into the user-name field
    statuses = []
    for _ in range(2):
        page = client.get("/account/forgot-password")
        statuses.append(client.post("/account/forgot-password", data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "username": typed}).status_code)
    assert statuses == [200, 429]
    refusals = [r.getMessage() for r in caplog.records if r.name == "flask-limiter"]
    assert refusals and all("recovery.forgot_password" in message for message in refusals), refusals
    assert typed not in caplog.text, f"what was typed into the form is in the log: {refusals}"



# --- a real server: its standard error as production collects it --------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn as production runs it (one worker, request lines written at once), whose rate-limit
    store is a Redis that refuses every connection."""
    tmp = tmp_path_factory.mktemp("logs-review")
    with GunicornServer("sqlite:///" + str(tmp / "logs.db"), workers=1, name="logs", log_dir=tmp,
                        ratelimit_storage_uri=f"redis://127.0.0.1:{mail_server.refusing_port()}/5",
                        env={"FLASK_LOG_REQUESTS_FLUSH_SECONDS": "0"}) as running:
        yield running


def json_lines(server, wait_for: str | None = None, timeout: float = 5) -> list[dict]:
    """The server's JSON lines (the request log and the app's records), once one holds `wait_for`."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in server.log(tail=100_000).splitlines() if line.startswith("{")]
        if wait_for is None or any(wait_for in json.dumps(line) for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.server
@pytest.mark.database_independent
def test_an_unreachable_rate_limit_store_is_a_warning_in_the_log(server):
    """docs/passwords.md: while the Redis of the rate limits is unreachable each worker counts in its
    own memory, "a warning in the log". Flask-Limiter's logger has a NullHandler of its own and no
    server configures the root logger, so its "Rate limit storage unreachable" warning went nowhere:
    under gunicorn (and granian) the log said nothing while every worker counted each limit alone."""
    assert requests.get(server.url + "/account/login", timeout=10).status_code == 200
    warnings = [line for line in json_lines(server, "Rate limit storage unreachable")
                if line.get("level") == "WARNING"]
    assert [line["logger"] for line in warnings] == ["flask-limiter"], f"no warning in the log:\n{server.log()}"


# --- start-up with bad settings --------------------------------------------------------------------------


def _production_app(instance, **config):
    """create_app in production with what it requires (as tests/test_config_review.py's make)."""
    from cryptography.fernet import Fernet

    from app import create_app

    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(), "ISSUER": "https://id.example.test",
            "MAIL_SERVER": "smtp.example.test", "SECRET_KEY": "k" * 32}
    return create_app({**base, **config})


@pytest.mark.database_independent
@pytest.mark.parametrize("uri", ["postgresql+psycopg2://identity:db-password@127.0.0.1/identity",
                                 "postgresql+asyncpg://identity:db-password@127.0.0.1/identity",
                                 "postgresql+nodriver://identity:db-password@127.0.0.1/identity"])
def test_a_database_driver_that_is_not_installed_is_refused_in_one_line(instance, uri):
    """docs/configuration.md: a setting that cannot work stops the server "with one line naming the
    setting ... rather than a traceback". A PostgreSQL URL naming another driver than psycopg (the
    psycopg2 of many a guide, asyncpg) passed the check of the URL's database and then stopped every
    worker with a traceback (ModuleNotFoundError: No module named 'psycopg2', NoSuchModuleError)
    that named neither the setting nor the fix."""
    from identity.config.startup import ConfigurationError

    try:
        _production_app(instance, SQLALCHEMY_DATABASE_URI=uri)
    except ConfigurationError as err:
        message = str(err)
    except Exception as err:  # what reached the server's output as a traceback
        pytest.fail(f"a traceback, not a line: {type(err).__name__}: {err}")
    else:
        pytest.fail("started")
    assert "SQLALCHEMY_DATABASE_URI" in message and "\n" not in message and "db-password" not in message



@pytest.mark.server
@pytest.mark.database_independent
def test_a_body_that_is_not_chunked_as_it_says_is_not_in_gunicorns_log(server):
    """docs/security.md: client secrets are never logged. A client that sends `Transfer-Encoding:
    chunked` and then the form itself, unchunked (a client library's or a proxy's mistake), was
    refused with 400, and gunicorn's error log, at its default level, quoted the line it could not
    read as a chunk size: "Invalid chunk size: b'grant_type=client_credentials&client_secret=...'"."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"POST /connect/token HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
                       b"Connection: close\r\n\r\ngrant_type=client_credentials&client_secret=CHUNKED-SECRET-1\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 5
    while "chunk size" not in server.log(tail=100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    named = [line for line in server.log(tail=100_000).splitlines() if "chunk size" in line]
    assert named, server.log()
    assert "CHUNKED-SECRET-1" not in server.log(tail=100_000), f"the body is in gunicorn's log: {named}"

# --- a worker killed for its time: gunicorn's error log names the request ---------------------------------


@pytest.mark.server
@pytest.mark.database_independent
def test_a_timed_out_request_is_named_by_its_path_alone_in_gunicorns_log(tmp_path):
    """docs/deployment.md: codes and tokens travel in query strings and never reach a log, "nor does
    gunicorn's error log, which names the request of a worker it killed after GUNICORN_TIMEOUT". Its
    filter cut the query string at the first quote, so an apostrophe in an earlier parameter (a
    state or a login_hint such as o'brien@example.com, which a client need not percent-encode) left
    the rest in the log: "Error handling request POST /connect/token's&code=..."."""
    silent_redis = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent_redis.bind(("127.0.0.1", 0))
    silent_redis.listen(8)
    slow = {"GUNICORN_TIMEOUT": "1", "FLASK_RATELIMIT_STORAGE_TIMEOUT_SECONDS": "20"}
    with silent_redis, GunicornServer("sqlite:///" + str(tmp_path / "slow.db"), workers=1, name="slow",
                                      log_dir=tmp_path, env=slow,
                                      ratelimit_storage_uri=f"redis://127.0.0.1:{silent_redis.getsockname()[1]}/5") as server:
        try:  # the rate limit's count waits on Redis longer than the worker may take
            requests.post(server.url + "/connect/token?state=it's&code=SECRET-CODE-1&id_token_hint=SECRET-HINT-2",
                          data={"grant_type": "client_credentials"}, auth=("nobody", "x"), timeout=30)
        except requests.RequestException:
            pass
        deadline = time.monotonic() + 10
        while "Error handling request" not in server.log(tail=100_000) and time.monotonic() < deadline:
            time.sleep(0.1)
    log = server.log(tail=100_000)
    named = [line for line in log.splitlines() if "Error handling request" in line]
    assert named, log
    assert "SECRET" not in log, f"the query string is in gunicorn's log: {named}"



# --- granian: its own lines on the stream the docs say to collect -----------------------------------------


class _GranianWithStdoutApart(GranianServer):
    """The launcher with its standard output in a file of its own (`stdout_path`), its standard error
    in `log_path`, as a shipper that collects standard error sees them."""

    def _spawn(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self._log_dir / f"{self.name}.stdout"
        with open(self.log_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=self.process_env(), stdout=out,
                                            stderr=err, start_new_session=True)


@pytest.mark.server
@pytest.mark.database_independent
def test_granians_worker_messages_are_on_standard_error(tmp_path):
    """docs/deployment.md: "collect the process's stderr ... the server's start-up and worker messages
    are the plain-text lines". granian wrote its own (start-up, "Unexpected exit from worker-1",
    "Respawning worker-1") on standard output: an operator shipping standard error, as told, saw the
    app's JSON lines and never the crash of a worker."""
    server = _GranianWithStdoutApart("sqlite:///" + str(tmp_path / "granian.db"), workers=1, name="granian",
                                     log_dir=tmp_path, start_timeout=20)
    try:
        server.start()
        (worker,) = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while "Respawning worker-1" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    except Exception as err:  # the launcher's start-up lines were not on standard error to wait for
        pytest.fail(f"{type(err).__name__}: granian's lines are not on standard error; its standard output: "
                    f"{server.stdout_path.read_text()[:300]!r}")
    finally:
        server.stop()
    stderr, stdout = server.log(tail=100_000), server.stdout_path.read_text()
    assert "Unexpected exit from worker-1" in stderr and "Respawning worker-1" in stderr, stderr
    assert stdout == "", f"on standard output: {stdout[:300]!r}"


# --- the development server's log ---------------------------------------------------------------------------


def test_the_development_servers_log_keeps_no_query_string(live_server, caplog):
    """docs/recovery.md: the request log records paths without query strings, "the development
    server's log too". werkzeug writes the request's query percent-decoded (a state's %22 as a
    quote: a JSON state, which a browser sends so), and the filter cut the query string at a quote:
    "GET /connect/endsession?state="x"&id_token_hint=..." left '"x"&id_token_hint=...' in the log."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    requests.get(f"{live_server.url}/connect/endsession?state=%22x%22&id_token_hint=SECRET-HINT", timeout=10,
                 allow_redirects=False)
    deadline = time.monotonic() + 5
    while not any(r.name == "werkzeug" for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert lines and all("/connect/endsession" in line for line in lines), lines
    assert "SECRET-HINT" not in caplog.text, f"the query string is in the log: {lines}"


@pytest.mark.server
@pytest.mark.database_independent
def test_a_granian_worker_that_cannot_start_is_not_reported_as_slow(tmp_path):
    """A setting that stops the app (one line, exit 3) under granian: the worker exits, granian says
    so, respawns it, and stops at the crash loop. The launcher, waiting for the respawned worker to
    build its app, also wrote "[WARNING] worker-1 did not build its app within 120 s" the moment it
    died: a slow start that never was, beside the one line that says what is wrong."""
    from servers import free_port, granian_command, server_env

    env = server_env("sqlite:///" + str(tmp_path / "bad.db"), extra={
        "FLASK_LOCKOUT_MAX_FAILURES": "10x", "GRANIAN_HOST": "127.0.0.1", "GRANIAN_PORT": str(free_port()),
        "GRANIAN_WORKERS": "1"})
    result = subprocess.run(granian_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    output = result.stdout + result.stderr
    assert "LOCKOUT_MAX_FAILURES must be a whole number" in output and "crash loop" in output, output
    assert "did not build its app" not in output, output


@pytest.mark.server
@pytest.mark.database_independent
def test_granian_starts_without_a_line_about_websockets(tmp_path):
    """Every start under the launcher began with "[INFO] Websockets are not supported on WSGI,
    ignoring": granian's websockets are on by default, and this WSGI app never asked for them; a
    line that reads as a fault, on every start and every respawn, about nothing the operator set."""
    from servers import free_port, granian_command, server_env

    env = server_env("sqlite:///" + str(tmp_path / "ws.db"), extra={
        "FLASK_LOCKOUT_MAX_FAILURES": "10x",  # the worker stops at once: the launcher's own lines are all there is
        "GRANIAN_HOST": "127.0.0.1", "GRANIAN_PORT": str(free_port()), "GRANIAN_WORKERS": "1"})
    result = subprocess.run(granian_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    output = result.stdout + result.stderr
    assert "Starting granian" in output, output
    assert "Websockets" not in output, output


@pytest.mark.server
@pytest.mark.database_independent
@pytest.mark.parametrize("kind", ["gunicorn", "granian"])
def test_a_metrics_directory_that_cannot_be_made_stops_the_server_in_one_line(tmp_path, kind):
    """PROMETHEUS_MULTIPROC_DIR where no directory can be (under a file, on a read-only mount, not
    the server's to write) stopped gunicorn and granian's launcher at start with a traceback
    (FileNotFoundError / NotADirectoryError from os.makedirs) that named no setting, where every
    other setting the servers read stops them in one line naming it (docs/deployment.md)."""
    from servers import free_port, granian_command, server_env

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = server_env("sqlite:///" + str(tmp_path / "m.db"), extra={
        "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"), "GRANIAN_HOST": "127.0.0.1",
        "GRANIAN_PORT": str(free_port()), "GRANIAN_WORKERS": "1", "WEB_CONCURRENCY": "1"})
    command = (granian_command() if kind == "granian" else
               [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{free_port()}"])
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "PROMETHEUS_MULTIPROC_DIR" in output, output
    assert "Traceback" not in output, output


@pytest.mark.database_independent
def test_a_database_url_option_libpq_does_not_know_is_refused_in_one_line(instance):
    """A PostgreSQL URL with a query option libpq does not know (?sslmod=require for sslmode) started,
    and the server then logged "database unreachable: ProgrammingError; serving 503 until it is
    reachable" and "database unavailable: ProgrammingError" for every request: an outage to wait
    out, by its words, where a setting was wrong and nothing would change by itself."""
    from identity.config.startup import ConfigurationError

    try:
        _production_app(instance, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://identity:db-password@127.0.0.1/x?sslmod=require")
    except ConfigurationError as err:
        message = str(err)
    else:
        pytest.fail("started: every request would be a 503 logged as 'database unavailable: ProgrammingError'")
    assert "SQLALCHEMY_DATABASE_URI" in message and "sslmod" in message and "db-password" not in message
