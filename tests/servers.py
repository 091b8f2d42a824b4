"""Real servers for tests: the app as it is deployed, in a subprocess on a free loopback port,
with its own environment. Two kinds, with one interface (start/stop/url/log/cli/env/workers/name,
worker_pids, reload, a context manager):

- `GranianServer`: the faster alternative, granian through the launcher (granian_server.py,
  `portcullis-serve`);
- `GunicornServer`: `gunicorn -c gunicorn.conf.py`, sync workers.

`AppServer` is the production default (gunicorn); tests that are about one server name it, and
`SERVERS` maps "granian" / "gunicorn" to the classes for tests parametrised over both.

    with AppServer(database_uri, workers=2) as server:
        requests.get(server.url + "/healthz")

Also small HTTP actions (sign in, authorize with PKCE, token requests) done with `requests`,
and `run_together` to start calls at the same moment.

Several servers may share one database (and SECRET_KEY / ISSUER) to stand for instances behind a
load balancer. The database is migrated with the operator's command before the first start.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

import mail_server
from bench.server import ServerError, children, free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
TEST_SECRET_KEY = "multi-instance-test-secret-key-not-for-production"

# Variables of the calling environment that must not leak into a server under test.
_SCRUBBED = ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "FLASK_APP", "FLASK_DEBUG")
_SCRUBBED_PREFIXES = ("FLASK_", "GUNICORN_", "GRANIAN_")


def granian_command() -> list[str]:
    """How the production launcher starts: granian_server.py beside app.py (`portcullis-serve`)."""
    return [sys.executable, str(ROOT / "granian_server.py")]


def server_env(database_uri: str, *, secret_key: str = TEST_SECRET_KEY, issuer: str | None = None,
               ratelimit_storage_uri: str = "memory://", extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server or CLI process: FLASK_* settings on top of ours, minus leaks."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)}
    env.update({
        "FLASK_SQLALCHEMY_DATABASE_URI": database_uri,
        "FLASK_SECRET_KEY": secret_key,
        # Development: cookies without the Secure flag, since the test talks plain HTTP.
        "FLASK_ENVIRONMENT": "development",
        "FLASK_RATELIMIT_STORAGE_URI": ratelimit_storage_uri,
        "PYTHONUNBUFFERED": "1",
        **mail_server.environment(),  # mail goes to this test process's SMTP server
    })
    if issuer:
        env["FLASK_ISSUER"] = issuer
    env.update(extra or {})
    return env


def flask_cli(args: list[str], env: dict[str, str], *, input: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m flask --app app ARGS` from the project root; raise with its output on failure."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT, env=env, input=input, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise ServerError(f"flask {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


_migrated_sqlite_file: Path | None = None  # this pytest process's first file `flask db upgrade` made


def migrate(env: dict[str, str]) -> None:
    """Bring the schema to the newest migration, as an operator does before starting servers.

    `flask db upgrade` is a process of about 2 s of CPU, and the suite starts hundreds of servers,
    so it runs only where it would do something that a copy cannot: a database already at the
    newest migration is left as it is (the command would change nothing), and a new SQLite file
    after the first of this pytest process is a copy of that first one (the same bytes: the
    schema and its alembic_version, which no setting changes). tests/test_migrations.py and the
    upgrade reviews run the command themselves."""
    global _migrated_sqlite_file
    uri = env["FLASK_SQLALCHEMY_DATABASE_URI"]
    if _schema_is_current(uri):
        return
    target = _new_sqlite_file(uri)
    if target is not None and _migrated_sqlite_file is not None:
        _copy_private(_migrated_sqlite_file, target)
        return
    flask_cli(["db", "upgrade"], env)
    if target is not None and not Path(f"{target}-wal").exists():
        _migrated_sqlite_file = _process_temporary_directory("migrated-") / "migrated.db"
        _copy_private(target, _migrated_sqlite_file)


def _process_temporary_directory(prefix: str) -> Path:
    """A new temporary directory, removed when this pytest process exits (a test's own files go in
    its tmp_path; these outlive a test: the migrated copy, a server's log read after it stopped)."""
    directory = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, directory, True)
    return Path(directory)


def _new_sqlite_file(uri: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URI whose file does not exist yet, else None."""
    if not uri.startswith("sqlite:///") or "?" in uri or uri == "sqlite:///:memory:":
        return None
    path = Path(uri[len("sqlite:///"):])
    return None if path.exists() else path


def _copy_private(source: Path, target: Path) -> None:
    """Copy a database file, readable by its owner only as the app creates them (schema.py)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
        dst.write(src.read())


def _schema_is_current(uri: str) -> bool:
    """Whether the database at `uri` exists and records the newest migration."""
    from sqlalchemy import create_engine, inspect, text

    from identity.services.schema import VERSION_TABLE, head_revision

    if _new_sqlite_file(uri) is not None or uri.startswith("sqlite:///:memory:"):
        return False
    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return False
            return connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}")) == head_revision()
    except Exception:  # no such database, or one the command must answer for: let it run
        return False
    finally:
        engine.dispose()


class _Server:
    """One server instance (a main process + `workers` worker processes) on 127.0.0.1:<free port>.

    `env` overrides come last (e.g. {"FLASK_LOCKOUT_MAX_FAILURES": "3"}); `args` are extra
    command-line options of the server. `migrate_first` runs `flask db upgrade` before starting;
    pass False for the second instance on a shared database. The server's output goes to
    `log_path`; `log()` returns it for failure messages.
    """

    kind = "server"

    def __init__(self, database_uri: str, *, workers: int = 2, name: str = "server",
                 secret_key: str = TEST_SECRET_KEY, issuer: str | None = None,
                 ratelimit_storage_uri: str = "memory://", env: dict[str, str] | None = None,
                 args: list[str] | None = None, migrate_first: bool = True,
                 log_dir: str | os.PathLike | None = None, start_timeout: float = 60):
        self.name = name
        self.workers = workers
        self.database_uri = database_uri
        self.env = server_env(database_uri, secret_key=secret_key, issuer=issuer,
                              ratelimit_storage_uri=ratelimit_storage_uri, extra=env)
        self.args = list(args or [])
        self.migrate_first = migrate_first
        self.start_timeout = start_timeout
        self._log_dir = Path(log_dir) if log_dir else _process_temporary_directory(f"{self.kind}-")
        self.log_path = self._log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.url if self.port else '(not started)'}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail: int = 80) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-tail:])

    def cli(self, args: list[str], *, input: str | None = None) -> subprocess.CompletedProcess:
        """Run an operator command against this server's database and settings."""
        return flask_cli(args, self.env, input=input)

    # --- what differs between servers -----------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        """The server process's environment: `env`, plus what the address and worker count need."""
        return dict(self.env)

    # --- processes ----------------------------------------------------------------------------
    @property
    def main_pid(self) -> int:
        """The main process (gunicorn's master, granian's main process): it forks the workers."""
        assert self.process is not None, "not started"
        return self.process.pid

    def worker_pids(self) -> set[int]:
        """The workers: the main process's children (gunicorn's forks; granian's multiprocessing children)."""
        return set(children(self.main_pid))

    def wait_for_workers(self, count: int | None = None, *, not_in=frozenset(), timeout: float = 30) -> set[int]:
        """Wait until exactly `count` (default: `workers`) workers run and none is in `not_in`."""
        count = self.workers if count is None else count
        deadline = time.monotonic() + timeout
        pids: set[int] = set()
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count and not (pids & set(not_in)):
                return pids
            time.sleep(0.05)
        raise AssertionError(f"{self.kind} {self.name} did not get to {count} new workers "
                             f"(now {sorted(pids)}, old {sorted(not_in)}):\n{self.log()}")

    def reload(self) -> None:
        """Graceful reload: SIGHUP to the main process (both servers start new workers, then stop the old)."""
        os.kill(self.main_pid, signal.SIGHUP)

    # --- life cycle ---------------------------------------------------------------------
    def start(self):
        if self.migrate_first:
            migrate(self.env)
        last_error = None
        for _ in range(3):  # the free port may be taken between our probe and the server's bind
            self.port = free_port()
            try:
                self._spawn()
                self._wait_until_healthy()
                return self
            except ServerError as err:
                last_error = err
                self.stop()
                if "Address already in use" not in self.log():
                    break
        raise last_error

    def _spawn(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.process_env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )

    def wait_until_serving(self, timeout: float | None = None) -> None:
        """Until /healthz answers 200. granian's workers hold the listening socket themselves: while
        none runs (all killed at once) connections are refused, where gunicorn's master keeps it."""
        self._wait_until_healthy(timeout)

    def _wait_until_healthy(self, timeout: float | None = None) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.kind} {self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise ServerError(f"{self.kind} {self.name} not healthy after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful: running requests finish), then SIGKILL the group if it lingers."""
        process, self.process = self.process, None
        stop_process_group(process, timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def two_instances(database_uri: str, **common):
    """Instances A and B of one database (A migrates it first), each with `common`; both are
    stopped after (A too, if B does not start)."""
    with AppServer(database_uri, name="A", **common) as a, \
            AppServer(database_uri, name="B", migrate_first=False, **common) as b:
        yield a, b


class GunicornServer(_Server):
    """gunicorn as gunicorn.conf.py sets it up: a master and `workers` sync workers."""

    kind = "gunicorn"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                "--name", f"identity-test-{self.name}", *self.args]


class GranianServer(_Server):
    """granian through the production launcher (granian_server.py): a main process and `workers`
    worker processes, each with one Python thread; GRANIAN_* in `env` (or `args`) change the rest."""

    kind = "granian"

    def command(self) -> list[str]:
        return [*granian_command(), *self.args]

    def process_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.update({"GRANIAN_HOST": "127.0.0.1", "GRANIAN_PORT": str(self.port), "GRANIAN_WORKERS": str(self.workers)})
        return env

    def _wait_until_healthy(self, timeout: float | None = None) -> None:
        """Until /healthz answers and every worker has started: granian 2.8 does not stop a worker
        that finishes starting after SIGTERM arrived, and its shutdown then waits out
        GRANIAN_WORKERS_KILL_TIMEOUT (seen: a test stopping the server right after one worker answered)."""
        super()._wait_until_healthy(timeout)
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while self.log(tail=100_000).rpartition("Starting granian")[2].count("[INFO] Started worker-") < self.workers:
            if time.monotonic() > deadline:
                raise ServerError(f"granian {self.name}: not every worker started:\n{self.log()}")
            time.sleep(0.05)


#: the production default (gunicorn: granian's reloads lose queued connections, docs/deployment.md)
AppServer = GunicornServer
#: both servers, for tests parametrised over them
SERVERS: dict[str, type[_Server]] = {"granian": GranianServer, "gunicorn": GunicornServer}


def password_grant_seed(client_id: str, secret: str, username: str, password: str, *,
                        offline_access: bool = False) -> dict:
    """A seed with the local API scope, one confidential client allowed the password grant, one user."""
    scopes = ["openid", "offline_access", "IdentityServerApi"] if offline_access else ["openid", "IdentityServerApi"]
    return {
        "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
        "clients": [{"client_id": client_id, "client_name": f"{client_id} client", "client_secrets": [secret],
                     "allowed_grant_types": ["password"], "allow_offline_access": offline_access,
                     "allowed_scopes": scopes}],
        "users": [{"username": username, "email": f"{username}@example.com", "password": password,
                   "name": username.title()}],
    }


def _empty(uri: str) -> None:
    """Delete every test-made row from the database at `uri` (conftest.empty_database), migrating
    it first: a server test may be the first of its pytest process, on a database made afresh."""
    from app import create_app
    from conftest import empty_database, make_config
    from identity.extensions import db
    from identity.services.schema import ensure_schema

    app = create_app(make_config(uri))
    with app.app_context():
        ensure_schema()
    empty_database(app)
    with app.app_context():
        db.engine.dispose()


@contextmanager
def seeded_server(tmp_path: Path, seed: dict, *, name: str, env: dict[str, str] | None = None,
                  server: type[_Server] | None = None):
    """A 2-worker server (`server`, default AppServer) on the suite's PostgreSQL database (FLASK_SQLALCHEMY_DATABASE_URI), or
    else on a SQLite file in `tmp_path`, seeded with `seed`; `database_uri` says which.

    The PostgreSQL database is shared with the earlier tests of this pytest process, which may
    have left rows behind (a test that enrolled alice's authenticator app made the next server
    test's sign-in ask for a code), so it is emptied first, as the `app` fixture empties it."""
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if uri and uri.startswith("postgresql"):
        _empty(uri)
    else:
        uri = "sqlite:///" + str(tmp_path / f"{name}.db")
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    with (server or AppServer)(uri, workers=2, name=name, log_dir=tmp_path, env=env) as running:
        seeded = running.cli(["seed", str(seed_file)])
        assert seeded.returncode == 0, seeded.stderr
        running.database_uri = uri
        yield running


# --- driving the server over HTTP (requests), as a browser and a client app do ---------------

_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_from(html: str) -> str:
    match = _CSRF_RE.search(html)
    if not match:
        raise AssertionError("no csrf_token in the page:\n" + html[:2000])
    return match.group(1) or match.group(2)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in(browser: requests.Session, base_url: str, username: str, password: str) -> requests.Response:
    """Post the login form (with its CSRF token) the way a browser does; returns the POST's response."""
    page = browser.get(base_url + "/account/login", timeout=30)
    page.raise_for_status()
    return browser.post(base_url + "/account/login", timeout=30, allow_redirects=False,
                        data={"csrf_token": csrf_from(page.text), "username": username, "password": password})


def authorize(browser: requests.Session, base_url: str, *, client_id: str, redirect_uri: str,
              scope: str = "openid", **extra) -> tuple[requests.Response, str]:
    """GET /connect/authorize with PKCE (no redirects followed); returns (response, code_verifier)."""
    verifier, challenge = pkce_pair()
    params = {"client_id": client_id, "response_type": "code", "scope": scope, "redirect_uri": redirect_uri,
              "state": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    response = browser.get(base_url + "/connect/authorize?" + urlencode(params), timeout=30, allow_redirects=False)
    return response, verifier


def redirect_params(response: requests.Response) -> dict[str, str]:
    """The parameters of a redirect to a client (query or fragment)."""
    location = response.headers.get("Location", "")
    parts = urlsplit(location)
    return {k: v[0] for k, v in parse_qs(parts.fragment or parts.query).items()}


def token_request(base_url: str, client_id: str, client_secret: str | None = None, **form) -> requests.Response:
    """POST /connect/token with client_secret_basic (or `none` for a public client)."""
    auth = (client_id, client_secret) if client_secret else None
    if client_secret is None:
        form["client_id"] = client_id
    return requests.post(base_url + "/connect/token", data=form, auth=auth, timeout=30)


def run_together(*calls, timeout: float = 60) -> list:
    """Run the callables at the same moment in threads (a barrier releases them together).

    Returns each one's result, or the exception it raised, in order.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def runner(index, call):
        barrier.wait(timeout)
        try:
            results[index] = call()
        except BaseException as err:  # reported to the caller
            results[index] = err

    threads = [threading.Thread(target=runner, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError("a concurrent call did not finish")
    return results
