"""The faster production server: granian's WSGI interface with this project's defaults.

    portcullis-serve                      # or: python granian_server.py
    portcullis-serve --workers 4          # any granian option; GRANIAN_* variables work as well

granian (a Rust HTTP server, on PyPI) reads and writes the sockets on its own threads, keeps
connections alive and queues requests, and hands each one to a Python worker thread: about twice
gunicorn's sync workers' rate in the bench suite. gunicorn (`gunicorn -c gunicorn.conf.py`) stays
the default because granian resets the connections queued on a worker that stops (a reload, a
recycle): README, "Production server", and docs/deployment.md.

What this launcher adds to `granian` itself, each as a default the environment or a flag can change:

- the app: `--interface wsgi --factory granian_server:worker_app`;
- one Python thread per worker (GRANIAN_BLOCKING_THREADS=1): a worker runs one request at a time,
  as gunicorn's sync worker does, while granian's own threads deal with slow clients and
  keep-alive; more threads measured slower (Argon2 and the signing work hold the GIL);
- workers: WEB_CONCURRENCY, else 2 x cores + 1 (at most 12), as gunicorn.conf.py;
- PORT (8000) on 0.0.0.0, unless GRANIAN_HOST / GRANIAN_PORT / GRANIAN_UDS say otherwise;
- on a reload or a recycle, an old worker stops only once its successor has built the app (granian
  alone waits a fixed time, and under load a successor still importing the app left no worker
  listening: connections were refused), `wait_for_successors`;
- a worker that dies is started again (--respawn-failed-workers), a worker that does not stop
  within 30 s of a reload or shutdown is killed (--workers-kill-timeout), and a client must send
  its request headers within 10 s (--http1-header-read-timeout);
- PROMETHEUS_MULTIPROC_DIR made (a new temporary directory unless set) and its metrics files deleted before the
  workers start, so GET /metrics adds up every worker's counters; removed at exit if made here;
- one malloc arena, so a worker gives Argon2's memory back after hashing (`one_malloc_arena`);
- granian's own lines on standard error, with the app's (granian writes them on standard output),
  `log_to_standard_error`;
- no websockets (GRANIAN_WEBSOCKETS=false): a WSGI app has none, and granian said so at every start;
- each worker freezes its start-up objects out of the garbage collector's reach (gunicorn.conf.py
  says why), once the app is built.

It sits beside app.py, outside the `identity` package, so that the main process, which only
watches the workers, does not import the app: each worker imports it after the fork, and the
main process stays at the size of granian itself.
"""

from __future__ import annotations

import atexit
import glob
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time

#: granian's own logger, so the launcher's lines go where granian's go
logger = logging.getLogger("_granian")

#: granian's own variables and what this project sets them to unless the environment already does
DEFAULTS = {
    "GRANIAN_INTERFACE": "wsgi",
    "GRANIAN_FACTORY": "true",
    "GRANIAN_HOST": "0.0.0.0",
    "GRANIAN_BLOCKING_THREADS": "1",
    "GRANIAN_RESPAWN_FAILED_WORKERS": "true",
    # On a reload (SIGHUP) or a recycle, granian starts a worker's successor, waits this long, then
    # stops the old one. The launcher first waits for the successor to have built its app
    # (`wait_for_successors`); this is the pause after that, for its server to start listening.
    "GRANIAN_RESPAWN_INTERVAL": "1",
    "GRANIAN_WORKERS_KILL_TIMEOUT": "30",
    "GRANIAN_HTTP1_HEADER_READ_TIMEOUT": "10000",
    "GRANIAN_LOG_LEVEL": "info",
    # the app writes the one access log (JSON lines, identity/plumbing/headers.py)
    "GRANIAN_LOG_ACCESS_ENABLED": "false",
    # a WSGI app has no websockets: left on, granian wrote "Websockets are not supported on WSGI,
    # ignoring" at every start, a line that reads as a fault
    "GRANIAN_WEBSOCKETS": "false",
}
APP_TARGET = "granian_server:worker_app"


#: the directory where each worker says it has built its app (a file named by its process id)
READY_DIRECTORY = "PORTCULLIS_GRANIAN_READY_DIR"
#: the longest a reload waits for one successor to build its app before stopping the old worker anyway
SUCCESSOR_TIMEOUT = 120.0


def worker_app():
    """The app, built in each worker after granian has started it (nothing is shared across a fork)."""
    # identity/plumbing/granian_worker.py: create_app(), minus the process environment granian copies
    # into every request's environ, with the request log flushed at the worker's exit, gc.freeze()
    from identity.plumbing.granian_worker import build

    app = build()
    mark_ready()
    return app


def mark_ready() -> None:
    """Tell the main process that this worker has built its app (`wait_for_successors`)."""
    directory = os.environ.get(READY_DIRECTORY)
    if directory and os.path.isdir(directory):
        with open(os.path.join(directory, str(os.getpid())), "w"):
            pass


def wait_until_ready(worker, directory: str, timeout: float = SUCCESSOR_TIMEOUT) -> bool:
    """Until `worker` (a granian worker, started) has marked itself ready, died, or `timeout` passed."""
    marker = os.path.join(directory, str(worker.inner.pid))
    deadline = time.monotonic() + timeout
    while not os.path.exists(marker):
        if not worker.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    os.remove(marker)
    return True


def wait_for_successors(server_class, directory: str, timeout: float = SUCCESSOR_TIMEOUT) -> None:
    """Have `server_class` (granian's MPServer) stop a worker on a reload or recycle only once its
    successor has built the app, or has died, or `timeout` has passed.

    granian's `_respawn_workers` starts the successor, sleeps GRANIAN_RESPAWN_INTERVAL, then stops
    the old worker. Under load a successor took longer than that to import and build the app (over
    10 s, seen in CI), and once every old worker had stopped no process was listening: clients got
    "connection refused". The successor's `start()` now returns only once it is ready; the first
    workers, started together at launch, are not held up."""
    spawn, respawn = server_class._spawn_worker, server_class._respawn_workers

    def _respawn_workers(self, *args, **kwargs):
        self._portcullis_respawning = True
        try:
            return respawn(self, *args, **kwargs)
        finally:
            self._portcullis_respawning = False

    def _spawn_worker(self, *args, **kwargs):
        worker = spawn(self, *args, **kwargs)
        if getattr(self, "_portcullis_respawning", False):
            start = worker.start

            def start_and_wait():
                start()
                # one that died instead is no slow start: granian says so ("Unexpected exit from worker-1")
                if not wait_until_ready(worker, directory, timeout) and worker.is_alive():
                    logger.warning("worker-%s did not build its app within %.0f s", worker.idx + 1, timeout)

            worker.start = start_and_wait
        return worker

    server_class._respawn_workers = _respawn_workers
    server_class._spawn_worker = _spawn_worker


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset), not the host's, as gunicorn.conf.py
    counts them: a container given one core of a large host started a worker for every host core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else multiprocessing.cpu_count()


def environment(env: dict[str, str]) -> dict[str, str]:
    """`env` with this project's defaults filled in where it leaves granian's variables unset."""
    env = dict(env)
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    if "GRANIAN_WORKERS" not in env:
        workers = env.get("WEB_CONCURRENCY", "").strip()
        env["GRANIAN_WORKERS"] = workers or str(min(usable_cores() * 2 + 1, 12))
    if "GRANIAN_PORT" not in env and env.get("PORT", "").strip():
        env["GRANIAN_PORT"] = env["PORT"].strip()
        if not (env["GRANIAN_PORT"].isascii() and env["GRANIAN_PORT"].isdigit()) or int(env["GRANIAN_PORT"]) > 65535:
            # granian's own check takes any integer, and a port past 65535 failed with a traceback
            raise SystemExit(f"portcullis-serve: PORT must be a whole number from 0 to 65535, not {env['PORT']!r}")
    if "GRANIAN_PORT" not in env:
        env["GRANIAN_PORT"] = "8000"
    return env


#: The files prometheus_client's multiprocess mode writes (counter_<pid>.db, gauge_livesum_<pid>.db, ...):
#: the only ones a start deletes, so a directory that also holds a SQLite database keeps it.
METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def prepare_metrics_directory() -> None:
    """PROMETHEUS_MULTIPROC_DIR, empty, before any worker imports prometheus_client."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="portcullis-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        atexit.register(shutil.rmtree, directory, True)
    try:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            if METRICS_FILE.fullmatch(os.path.basename(path)):  # prometheus_client's own, not any *.db there
                os.remove(path)
    except OSError as err:  # one line naming the setting, as for PORT, not a traceback
        raise SystemExit(f"portcullis-serve: PROMETHEUS_MULTIPROC_DIR {directory!r} cannot be used: "
                         f"{err.strerror or err}") from None


M_ARENA_MAX = -8  # glibc's mallopt parameter


def one_malloc_arena() -> None:
    """Have glibc keep one malloc arena (as MALLOC_ARENA_MAX=1 would, unless that is set), in this
    process and the workers it forks. A worker's Python code runs on one of granian's threads, and
    glibc gives such a thread an arena of its own, from which malloc_trim did not hand Argon2's
    19 MiB back after hashing (identity/services/passwords.py): measured, a worker stayed at 112 MiB
    after ten sign-ins, against 92 MiB with one arena, as under gunicorn (87 MiB)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc: nothing to set
        pass


def log_to_standard_error() -> None:
    """granian's own lines (start-up, a worker's unexpected exit and respawn) on standard error, where
    the app's JSON lines are and gunicorn writes its own (errorlog "-"): granian's default logging
    config writes them on standard output, and an operator who ships standard error, as
    docs/deployment.md says, never saw a worker crash. A --log-config file still decides for itself."""
    from granian import log as granian_log

    for handler in granian_log.LOGGING_CONFIG["handlers"].values():
        handler["stream"] = "ext://sys.stderr"


def main(argv: list[str] | None = None, target: str = APP_TARGET) -> None:
    """granian's command line with this project's defaults; `target`: the app factory's import path."""
    os.environ.update(environment(dict(os.environ)))
    one_malloc_arena()
    prepare_metrics_directory()
    ready = tempfile.mkdtemp(prefix="portcullis-ready-")
    atexit.register(shutil.rmtree, ready, True)
    os.environ[READY_DIRECTORY] = ready
    # this start's directory for identity/services/schema.py as well (SERVER_STATE_DIR): a worker
    # replacing one after a newer release's migrations have run serves on, as gunicorn.conf.py's
    os.environ["PORTCULLIS_SERVER_STATE_DIR"] = ready
    from granian.cli import cli
    from granian.server import MPServer

    wait_for_successors(MPServer, ready)
    log_to_standard_error()

    args = list(sys.argv[1:] if argv is None else argv)
    cli.main(args=[*args, target], prog_name="portcullis-serve", auto_envvar_prefix="GRANIAN")


if __name__ == "__main__":
    main()
