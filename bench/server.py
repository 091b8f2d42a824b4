"""Start the app the way the project deploys it, on a free loopback port: under granian through
granian_server.py (`portcullis-serve`), or under gunicorn with gunicorn.conf.py,
with its sync or gthread workers (`ServerConfig`, --server).

tests/servers.py does the same for the test suite; the benchmark needs three things it does
not have, so it keeps its own small launcher: another app spec for the bare baseline, a
millisecond-resolution "start to first 200 on /healthz" figure, and the worker pids (for RSS).
tests/servers.py uses its `free_port`, `ServerError` and `stop_process_group`.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
APP_SPEC = "app:create_app()"
BARE_SPEC = "bench.bare_app:create_app()"
#: the servers --server names; KIND[:tN][:bpN] (threads per worker; granian's backpressure per worker)
SERVER_KINDS = ("granian", "gunicorn-sync", "gunicorn-gthread")

# Settings of the calling shell that must not leak into the server under test.
_SCRUBBED_PREFIXES = ("FLASK_", "GUNICORN_", "GRANIAN_")
_SCRUBBED = {"PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    """Which server, and how many Python threads per worker: `granian`, `granian:t2:bp8`,
    `gunicorn-sync`, `gunicorn-gthread:t4`. `backpressure` (granian only): requests a worker
    takes in at once, the rest wait in granian's queue (None: granian's default, backlog / workers)."""

    kind: str = "granian"
    threads: int = 1
    backpressure: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ServerConfig":
        kind, *options = [part.strip() for part in text.strip().split(":")]
        if kind not in SERVER_KINDS:
            raise ValueError(f"unknown server {kind!r} (one of {', '.join(SERVER_KINDS)})")
        threads, backpressure = 1, None
        for option in options:
            if option.startswith("bp") and option[2:].isdigit() and kind == "granian":
                backpressure = int(option[2:])
            elif option.startswith("t") and option[1:].isdigit() and int(option[1:]) >= 1:
                threads = int(option[1:])
            else:
                raise ValueError(f"unknown option {option!r} in {text!r} (tN for threads, bpN for granian's backpressure)")
        if kind == "gunicorn-sync" and threads != 1:
            raise ValueError("gunicorn's sync worker has one thread; use gunicorn-gthread:tN")
        return cls(kind, threads, backpressure)

    @property
    def name(self) -> str:
        return self.kind + (f":t{self.threads}" if self.threads != 1 or self.kind == "gunicorn-gthread" else "") + (
            f":bp{self.backpressure}" if self.backpressure else "")

    def describe(self, workers: int) -> str:
        if self.kind == "granian":
            return (f"granian {_version('granian')} WSGI (granian_server.py), {workers} workers x "
                    f"{self.threads} blocking thread{'s' if self.threads > 1 else ''}, backpressure "
                    f"{self.backpressure or 'default'}")
        worker = "sync" if self.kind == "gunicorn-sync" else f"gthread ({self.threads} threads)"
        return f"gunicorn {_version('gunicorn')} (gunicorn.conf.py), {workers} {worker} workers"


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return "?"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def flask_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """`python -m flask --app app ARGS` in the project root; its output, or ServerError."""
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ServerError(f"flask {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def get_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of GET path on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class Server:
    """The app (or the bare baseline, `spec`) under one server, `workers` worker processes, on 127.0.0.1:port.

    `server_env` sets the server's own variables (GUNICORN_MAX_REQUESTS, GRANIAN_*, ...); `app_env`
    the app's FLASK_* settings. `port` may be chosen beforehand (the issuer names it).
    """

    def __init__(self, spec: str, *, workers: int, log_path: Path, app_env: dict[str, str] | None = None,
                 gunicorn_env: dict[str, str] | None = None, port: int | None = None, name: str = "server",
                 nice: int = 0, config: ServerConfig = ServerConfig("gunicorn-sync")):
        self.spec = spec
        self.workers = workers
        self.log_path = log_path
        self.app_env = dict(app_env or {})
        self.gunicorn_env = dict(gunicorn_env or {})
        self.port = port or free_port()
        self.name = name
        self.nice = nice
        self.config = config
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = base_env(self.app_env)
        if self.config.kind == "granian":
            import granian_server

            env.update({"GRANIAN_HOST": "127.0.0.1", "GRANIAN_PORT": str(self.port),
                        "GRANIAN_WORKERS": str(self.workers), "GRANIAN_BLOCKING_THREADS": str(self.config.threads),
                        "GRANIAN_LOG_LEVEL": "warning"})
            if self.config.backpressure:
                env["GRANIAN_BACKPRESSURE"] = str(self.config.backpressure)
            return granian_server.environment(env)
        env.update(self.gunicorn_env)
        env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        env["WEB_CONCURRENCY"] = str(self.workers)
        return env

    def command(self) -> list[str]:
        if self.config.kind == "granian":
            if self.spec == APP_SPEC:
                return [sys.executable, str(ROOT / "granian_server.py")]
            module, _, factory = self.spec.partition(":")
            return [sys.executable, "-m", "granian", f"{module}:{factory.removesuffix('()')}"]
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--workers", str(self.workers),
                   "--name", f"bench-{self.name}"]
        if self.config.kind == "gunicorn-gthread":
            command += ["--worker-class", "gthread", "--threads", str(self.config.threads)]
        return command + [self.spec]

    def log(self, tail: int = 60) -> str:
        """The last lines of the server's output (the app may log every request: read only the end)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 65536))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-tail:])

    def start(self, timeout: float = 60) -> float:
        """Start and wait for the first 200 on /healthz; return the seconds that took."""
        if get_status(self.port, "/healthz", 0.2) is not None:
            raise ServerError(f"port {self.port} already answers")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None,
            )
        if self.nice:
            # its own session, so its own autogroup: give that group the same priority
            Path(f"/proc/{self.process.pid}/autogroup").write_text(str(self.nice))
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.config.kind} {self.name} exited with {self.process.returncode}:\n{self.log()}")
            if get_status(self.port, "/healthz") == 200:
                self.ready_seconds = time.perf_counter() - started
                return self.ready_seconds
            time.sleep(0.005)
        self.stop()
        raise ServerError(f"{self.config.kind} {self.name} not ready after {timeout}s:\n{self.log()}")

    def wait_for_workers(self, timeout: float = 30) -> list[int]:
        """Wait until every worker is forked; return their pids."""
        deadline = time.monotonic() + timeout
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= self.workers:
                break
            time.sleep(0.05)
        return pids

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        return children(self.process.pid)

    def stop(self, timeout: float = 20) -> None:
        process, self.process = self.process, None
        stop_process_group(process, timeout)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


Gunicorn = Server  # the name tests and older scripts use (a gunicorn sync server by default)


def stop_process_group(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM (graceful: running requests finish), then SIGKILL the process group if it lingers.

    The server (gunicorn, or the benchmark's Node.js reference) must have been started with
    start_new_session=True, so its group holds any workers.
    """
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


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
