"""Real gunicorn servers for tests: the app as it is deployed (`gunicorn -c gunicorn.conf.py`),
in a subprocess on a free loopback port, with its own environment.

    with GunicornServer(database_uri, workers=2) as server:
        requests.get(server.url + "/healthz")

Several servers may share one database (and SECRET_KEY / ISSUER) to stand for instances behind a
load balancer. The database is migrated with the operator's command before the first start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
TEST_SECRET_KEY = "multi-instance-test-secret-key-not-for-production"

# Variables of the calling environment that must not leak into a server under test.
_SCRUBBED = ("GUNICORN_CMD_ARGS", "GUNICORN_BIND", "PORT", "WEB_CONCURRENCY", "FLASK_APP", "FLASK_DEBUG")


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port that is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_uri: str, *, secret_key: str = TEST_SECRET_KEY, issuer: str | None = None,
               ratelimit_storage_uri: str = "memory://", extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server or CLI process: FLASK_* settings on top of ours, minus leaks."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("FLASK_")}
    env.update({
        "FLASK_SQLALCHEMY_DATABASE_URI": database_uri,
        "FLASK_SECRET_KEY": secret_key,
        # Development: cookies without the Secure flag, since the test talks plain HTTP.
        "FLASK_ENVIRONMENT": "development",
        "FLASK_RATELIMIT_STORAGE_URI": ratelimit_storage_uri,
        "PYTHONUNBUFFERED": "1",
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


def migrate(env: dict[str, str]) -> None:
    """Bring the schema to the newest migration, as an operator does before starting servers."""
    flask_cli(["db", "upgrade"], env)


class GunicornServer:
    """One gunicorn instance (master + `workers` sync workers) on 127.0.0.1:<free port>.

    `env` overrides come last (e.g. {"FLASK_LOCKOUT_MAX_FAILURES": "3"}). `migrate_first`
    runs `flask db upgrade` before starting; pass False for the second instance on a shared
    database. The server's output goes to `log_path`; `log()` returns it for failure messages.
    """

    def __init__(self, database_uri: str, *, workers: int = 2, name: str = "server",
                 secret_key: str = TEST_SECRET_KEY, issuer: str | None = None,
                 ratelimit_storage_uri: str = "memory://", env: dict[str, str] | None = None,
                 migrate_first: bool = True, log_dir: str | os.PathLike | None = None,
                 start_timeout: float = 60):
        self.name = name
        self.workers = workers
        self.env = server_env(database_uri, secret_key=secret_key, issuer=issuer,
                              ratelimit_storage_uri=ratelimit_storage_uri, extra=env)
        self.migrate_first = migrate_first
        self.start_timeout = start_timeout
        self._log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="gunicorn-"))
        self.log_path = self._log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

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

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> "GunicornServer":
        if self.migrate_first:
            migrate(self.env)
        last_error = None
        for _ in range(3):  # the free port may be taken between our probe and gunicorn's bind
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
                [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                 "--name", f"identity-test-{self.name}"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"gunicorn {self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise ServerError(f"gunicorn {self.name} not healthy after {self.start_timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful: running requests finish), then SIGKILL the group if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)

    def __enter__(self) -> "GunicornServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
