"""Review from outside: the provider run as a container platform runs it (a non-root user, a
read-only application directory, configuration from the environment only, probes on /healthz and
/readyz while the database is down or migrations run as a one-off job before a rolling update)."""

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from app import create_app
from conftest import ROOT, make_config
from servers import SERVERS
from identity.extensions import db


def _set_revision(app, revision: str) -> str:
    with app.app_context(), db.engine.begin() as conn:
        before = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    return before


@pytest.mark.database_independent
def test_a_serving_instance_stays_ready_when_the_next_release_migrates_the_database(own_sqlite_app):
    """A rolling update: the next release's migrations run as a one-off job, then its instances
    replace the running ones one by one. deployment.md: "Instances still running the previous
    release keep serving during the upgrade". /readyz answered 503 on every one of them as soon
    as the job had run (the schema is at a revision their code does not know), so the platform
    took every old instance out of service before a single new one was ready: an outage at each
    deploy that migrates."""
    client = own_sqlite_app.test_client()
    assert client.get("/readyz").status_code == 200
    head = _set_revision(own_sqlite_app, "ffffffffffff")  # the next release's migration job has run
    try:
        response = client.get("/readyz")
        assert response.status_code == 200, f"a running instance left the load balancer: {response.get_json()}"
        assert response.get_json()["status"] == "ready"
        assert client.get("/healthz").status_code == 200
    finally:
        _set_revision(own_sqlite_app, head)


@pytest.fixture
def silent_database():
    """A PostgreSQL address that accepts connections and never answers (a database host or a
    pooler hung, a failover in progress): the port, closed again at the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.database_independent
def test_readiness_answers_while_the_database_accepts_and_never_answers(silent_database):
    """A serving process waited for such a database to connect without end: /readyz never
    answered, and under gunicorn or granian each worker hung in its start-up check with not a
    line logged, so /healthz (the liveness probe) never answered either."""
    uri = f"postgresql+psycopg://identity:identity@127.0.0.1:{silent_database}/identity"
    app = create_app(make_config(uri))
    answers = []
    probe = threading.Thread(target=lambda: answers.append(app.test_client().get("/readyz")), daemon=True)
    started = time.monotonic()
    probe.start()
    probe.join(25)
    assert answers, f"/readyz still had no answer after {time.monotonic() - started:.0f} s"
    assert answers[0].status_code == 503
    assert answers[0].get_json()["reason"].startswith("database unreachable")


WORKERS_PROBE = """
import runpy, granian_server
workers = runpy.run_path('gunicorn.conf.py')['workers']
print(workers, granian_server.environment({})['GRANIAN_WORKERS'])
"""


def _default_workers(*prefix: str) -> list[int]:
    env = {name: value for name, value in os.environ.items() if name not in ("WEB_CONCURRENCY", "GRANIAN_WORKERS")}
    result = subprocess.run([*prefix, sys.executable, "-c", WORKERS_PROBE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()]


@pytest.mark.database_independent
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"), reason="needs two cores and taskset")
def test_the_default_worker_count_follows_the_cores_the_container_may_use():
    """deployment.md: WEB_CONCURRENCY defaults to 2 x cores + 1. A container given one core of
    the host (docker --cpuset-cpus, Kubernetes' static CPU manager) started 2 x the host's cores
    + 1 workers, each ~95 MiB: more processes than it can run, and past a memory limit sized
    for its core."""
    assert _default_workers("taskset", "-c", "0") == [3, 3], "workers for the host's cores, not the container's one"


PRODUCTION_ENV = {"FLASK_SECRET_KEY": "container-review-secret-key-0123456789abcdef",
                  "FLASK_ISSUER": "https://id.example.com", "FLASK_MAIL_SERVER": "127.0.0.1",
                  "FLASK_KEY_ENCRYPTION_KEY": "Vd1-8iJxqiVqz1kqJ8JbQxsT6uSt4zW8TbTq3m4c2dU="}


def _read_only_app_dir(tmp_path, command: str) -> subprocess.CompletedProcess:
    """Run `command` (sh) in a copy of app.py whose directory is mounted read-only, as a container
    image's application directory is (the package itself comes from the installed checkout)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(ROOT / "app.py", app_dir / "app.py")
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    env.update(PRODUCTION_ENV, PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    script = f"mount --bind {app_dir} {app_dir} && mount -o remount,bind,ro {app_dir} && cd {app_dir} && {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)


needs_mounts = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                  reason="mounts a read-only directory: needs root and unshare")


@pytest.mark.database_independent
@needs_mounts
def test_a_read_only_application_directory_without_a_database_uri_is_one_line(tmp_path):
    """FLASK_SQLALCHEMY_DATABASE_URI unset in an image whose application directory is read-only:
    the default SQLite database's folder (instance/) cannot be made. Each worker died with
    OSError's traceback; configuration.md: a missing or wrong setting stops the server with one
    line naming it, never a traceback."""
    result = _read_only_app_dir(tmp_path, f"{sys.executable} -c 'from app import create_app; create_app()'")
    assert "Traceback" not in result.stderr, result.stderr.strip().splitlines()[-1]
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if "rate limits are counted" not in line]
    assert len(lines) == 1 and "FLASK_SQLALCHEMY_DATABASE_URI" in lines[0] and "Read-only file system" in lines[0], lines


@pytest.mark.database_independent
def test_the_server_says_why_it_cannot_open_its_database(tmp_path):
    """A SQLite file on a volume the container's user cannot write (mounted owned by root, or not
    mounted at all): each worker logged 'database unreachable: OperationalError; serving 503
    until it is reachable' and nothing else, for ever. The flask command names the driver's reason
    (cli.md), the server, whose log is all a container operator has, did not (a wrong PostgreSQL
    password read the same)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    env.update(PRODUCTION_ENV, FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/volume-not-mounted/identity.db")
    result = subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "database unreachable" in line)
    assert "unable to open database file" in line, line


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0",
                                         "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": False}])
def test_a_503_for_an_unreachable_rate_limit_store_is_logged(client, caplog):
    """With the in-memory fallback off (configuration.md), a request a limit counts is answered 503
    while Redis is away, and the log, a container's only record, said nothing of why: the request
    lines showed 503s and no other line followed, where a database outage logs 'database
    unavailable' for each (deployment.md: application errors are JSON lines)."""
    caplog.set_level(logging.WARNING)
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 503 and response.headers.get("Retry-After") == "5"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("rate limit" in message.lower() for message in said), f"logged only {said}"


@pytest.mark.database_independent
@pytest.mark.server
@pytest.mark.parametrize("kind", ["gunicorn", "granian"])
def test_a_running_instance_survives_a_worker_replaced_during_a_rolling_update(kind, tmp_path):
    """The migration job has run; the previous release's instances keep serving until they are
    replaced (deployment.md). A worker they replace meanwhile (a reload, a recycle after
    GUNICORN_MAX_REQUESTS, one killed after GUNICORN_TIMEOUT or by the OOM killer) built the app,
    found the schema at a revision its code does not know and exited 3: gunicorn's master then
    stopped the whole instance ("Worker failed to boot"), granian's after its crash-loop check.
    A server started against that schema is still refused (test_gunicorn_smoke.py)."""
    uri = "sqlite:///" + str(tmp_path / "rolling.db")
    with SERVERS[kind](uri, workers=1, name=f"rolling-{kind}", log_dir=tmp_path) as server:
        engine = create_engine(uri)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))  # the next release's job
        engine.dispose()
        old = server.wait_for_workers()
        server.reload()
        deadline = time.monotonic() + 60
        while True:  # until the new worker answers, or the server has stopped
            assert server.process.poll() is None, f"{kind} stopped: " + " | ".join(server.log(6).splitlines())
            assert time.monotonic() < deadline, f"no new worker answered:\n{server.log()}"
            workers = server.worker_pids()
            if workers and not workers & old:
                try:
                    if requests.get(server.url + "/readyz", timeout=10).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
            time.sleep(0.2)
        time.sleep(1)
        assert server.process.poll() is None, f"{kind} stopped: " + " | ".join(server.log(6).splitlines())
        assert requests.get(server.url + "/.well-known/openid-configuration", timeout=10).status_code == 200


@pytest.mark.database_independent
def test_a_signing_key_no_configured_key_encryption_key_opens_is_one_line_and_503(app, client, caplog):
    """FLASK_KEY_ENCRYPTION_KEY mounted wrong (a new key given alone before `keys reencrypt`, a
    secret from another environment): the keys' own error says which key and what to do, but every
    request that signs or publishes keys answered 500 and logged it as 'unhandled error' with a
    traceback, a defect's shape, where a setting to fix is one line (and 503, as /readyz says)."""
    from cryptography.fernet import Fernet

    assert client.get("/.well-known/openid-configuration/jwks").status_code == 200  # the keys are made
    app.config["KEY_ENCRYPTION_KEY"] = [Fernet.generate_key().decode()]
    app.config["SIGNING_KEY_RELOAD_SECONDS"] = 0
    app.extensions.pop("identity_keyring", None)  # as a worker started with this setting
    caplog.set_level(logging.WARNING)
    response = client.get("/.well-known/openid-configuration/jwks")
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert response.status_code == 503 and not any(r.exc_info for r in said), \
        f"{response.status_code}, logged {[(r.getMessage(), bool(r.exc_info)) for r in said]}"
    assert any("cannot be decrypted with any KEY_ENCRYPTION_KEY" in r.getMessage() for r in said)


@pytest.mark.database_independent
def test_a_command_of_the_previous_release_says_the_schema_is_newer_in_one_line(own_sqlite_app):
    """A rolling update: the migration job has run, and a cron job of the previous release's image
    (`flask purge`, deployment.md) runs meanwhile. It printed Alembic's 'ERROR [flask_migrate]
    Error: Can't locate revision identified by ...' (it tried to upgrade the schema to its own
    head), where the server says what the matter is and what to do."""
    runner = own_sqlite_app.test_cli_runner()
    head = _set_revision(own_sqlite_app, "ffffffffffff")
    try:
        result = runner.invoke(args=["purge"])
    finally:
        _set_revision(own_sqlite_app, head)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "does not know" in lines[0] and head in lines[0] and "Can't locate" not in lines[0], lines
