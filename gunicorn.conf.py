"""Production gunicorn settings: `gunicorn -c gunicorn.conf.py` (the app spec is set below).

Every value can be changed through the environment, so one file serves a laptop, a VM and a
container. The application itself is configured with FLASK_* variables (see README,
"Deployment"); the ones read here only shape the server processes:

    GUNICORN_BIND          address(es) to listen on, comma-separated ("0.0.0.0:8000", "unix:/run/id.sock")
    PORT                   when GUNICORN_BIND is unset: listen on 0.0.0.0:$PORT (default 8000)
    WEB_CONCURRENCY        worker processes (default: 2 x cores + 1, at most 12)
    GUNICORN_TIMEOUT       seconds a worker may spend on one request before it is restarted (30)
    GUNICORN_GRACEFUL_TIMEOUT  seconds to finish running requests on SIGTERM / reload (30)
    GUNICORN_KEEPALIVE     seconds to hold an idle keep-alive connection (5)
    GUNICORN_MAX_REQUESTS  restart a worker after this many requests, 0 = never (100000; a restart costs a cold start)
    GUNICORN_MAX_REQUESTS_JITTER  random extra requests so workers do not restart together (10000)
    FORWARDED_ALLOW_IPS    proxies whose X-Forwarded-Proto gunicorn trusts ("127.0.0.1,::1");
                           the app's own ProxyFix (FLASK_TRUST_PROXY_HOPS) decides the issuer and client IP
    GUNICORN_LOG_LEVEL     error log level (info)
    GUNICORN_ACCESS_LOG    gunicorn's own access log: "off" (default: the app writes the one access
                           log, JSON lines on standard error), or a file, "-" for standard output
    GUNICORN_CONTROL_SOCKET  path of gunicorn's control socket (off by default: two instances on
                           one host would otherwise fight over ~/.gunicorn/gunicorn.ctl)
    PROMETHEUS_MULTIPROC_DIR  where the workers keep their metrics, so GET /metrics adds them up
                           (default: a new temporary directory per start, removed at exit; if set,
                           its files are deleted at start: one directory per instance)
"""

import gc
import glob
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile

from gunicorn.glogging import Logger
from gunicorn.http.errors import NoMoreData


def _int(name: str, default: int, least: int = 0, most: int | None = None) -> int:
    """The variable `name` as a whole number from `least` to `most`, else `default` if unset; any
    other value stops gunicorn at start in one line naming the variable, not with a traceback."""
    value = os.environ.get(name, "").strip()
    try:
        number = int(value) if value else default
    except ValueError:
        number = None
    if number is None or number < least or (most is not None and number > most):
        bounds = f"from {least} to {most}" if most is not None else f"of at least {least}"
        sys.exit(f"gunicorn.conf.py: {name} must be a whole number {bounds}, not {value!r}")
    return number


# --- the application ----------------------------------------------------------
wsgi_app = "app:create_app()"
# No preloading: each worker imports the app after the fork and opens its own database pool
# (a connection shared across a fork corrupts both ends). Signing keys live in the database.
preload_app = False

# --- sockets --------------------------------------------------------------------
if os.environ.get("GUNICORN_BIND", "").strip():  # blank: unset, as for the numbers below
    bind = [address.strip() for address in os.environ["GUNICORN_BIND"].split(",") if address.strip()]
    if not bind:  # "," listened nowhere, and every worker failed (IndexError) in a loop
        sys.exit(f"gunicorn.conf.py: GUNICORN_BIND must name an address (host:port or unix:path), not "
                 f"{os.environ['GUNICORN_BIND']!r}")
else:
    bind = [f"0.0.0.0:{_int('PORT', 8000, most=65535)}"]
backlog = 2048

# --- workers ----------------------------------------------------------------------
# Sync workers: each request holds one process, and Argon2 password hashing is CPU-bound
# (19 MiB, a few tens of ms), so more workers than ~2 x cores buys queueing, not throughput.
# Each worker keeps its own SQLAlchemy pool: budget workers x (pool_size + max_overflow) x instances
# against PostgreSQL's max_connections.
worker_class = "sync"
# at least 1: with 0 gunicorn listens and starts no worker, so every connection waits forever
# "cores" are those this process may run on (a container's cpuset), not the host's: a container given
# one core of a large host started 2 x the host's cores + 1 workers. A CPU quota (Kubernetes'
# limits.cpu) is not a core count: set WEB_CONCURRENCY there. granian_server.py counts the same way.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else multiprocessing.cpu_count()
workers = _int("WEB_CONCURRENCY", min(_cores * 2 + 1, 12), least=1)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then, staggered, to bound any slow growth in memory.
max_requests = _int("GUNICORN_MAX_REQUESTS", 100_000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 10_000)
# After a worker has imported the app, its objects (modules, the app, SQLAlchemy's and Authlib's
# classes: ~90,000 of them) live as long as the worker. gc.freeze() moves them out of the
# garbage collector's reach, so its full collections no longer walk them (measured in-process:
# one walk of ~70 ms every ~10,000 local API requests).


def post_worker_init(worker):
    gc.collect()
    gc.freeze()


# --- metrics (identity/services/metrics.py, docs/metrics.md) --------------------------------------
# prometheus_client's multiprocess mode: every worker writes its counters to files in
# PROMETHEUS_MULTIPROC_DIR, and a scrape answered by any worker adds them all up. The directory is
# chosen here, in the master, before any worker imports prometheus_client (which reads the variable
# once, at import), and it starts empty so a restart does not carry the last run's numbers.
_metrics_dir_made = False


#: The files prometheus_client's multiprocess mode writes (counter_<pid>.db, gauge_livesum_<pid>.db, ...):
#: the only ones a start deletes, so a directory that also holds a SQLite database keeps it.
_METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


#: a directory for this start of the server (identity/services/schema.py, SERVER_STATE_DIR): a worker
#: that found the schema current marks it, so that a worker replacing one (a reload, a recycle, a
#: crash) after a newer release's migrations have run serves on instead of stopping the server
_SERVER_STATE_DIR = "PORTCULLIS_SERVER_STATE_DIR"


def when_ready(server):
    """In the master, once it listens and before it forks the first worker."""
    try:
        os.environ[_SERVER_STATE_DIR] = tempfile.mkdtemp(prefix="portcullis-server-")
    except OSError:  # no writable temporary directory: a replaced worker is refused a newer schema, as before
        os.environ.pop(_SERVER_STATE_DIR, None)


def on_starting(server):
    global _metrics_dir_made
    logging.getLogger("gunicorn.error").addFilter(_without_request_secrets)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="portcullis-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        _metrics_dir_made = True
    try:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            if _METRICS_FILE.fullmatch(os.path.basename(path)):  # prometheus_client's own, not any *.db there
                os.remove(path)
    except OSError as err:  # one line naming the setting, as for the others, not a traceback
        sys.exit(f"gunicorn.conf.py: PROMETHEUS_MULTIPROC_DIR {directory!r} cannot be used: {err.strerror or err}")


def child_exit(server, worker):
    """A worker's counters stay (they are part of the totals), added into the files of the workers
    gone before it, and its own files go (identity/services/metrics_files.py says why). Its live
    gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    try:
        _metrics_files().fold_into_gone(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)
    except OSError as err:  # its files stay, and count as they did
        server.log.warning("could not fold the metrics of worker %s: %s", worker.pid, err)


def _metrics_files():
    """identity/services/metrics_files.py, loaded by its path: importing it as part of the
    `identity` package would import the whole app into the master (find_spec only finds it)."""
    import importlib.util

    package = importlib.util.find_spec("identity")
    path = os.path.join(os.path.dirname(package.origin), "services", "metrics_files.py")
    spec = importlib.util.spec_from_file_location("_portcullis_metrics_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_exit(server):
    shutil.rmtree(os.environ.get(_SERVER_STATE_DIR, ""), ignore_errors=True)
    if _metrics_dir_made:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# The heartbeat file on tmpfs: on a disk-backed /tmp (containers), fchmod can stall workers.
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"

# Long authorize / end-session URLs (id_token_hint, request parameters) fit in one request line.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# --- proxies --------------------------------------------------------------------------
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# No SCRIPT_NAME (or PATH_INFO) header from those proxies either (gunicorn's default maps them):
# the server answers at the root of its host (docs/deployment.md), and a proxy that passes on
# headers with an underscore would let a client move it for its request (a 404, or gunicorn's 500)
forwarder_headers = ""

# --- control socket (gunicorn >= 25.1; older versions ignore these names) ------------------
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# --- logging ---------------------------------------------------------------------------
proc_name = "portcullis-identity"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
errorlog = "-"
# One access log, not two: the app's JSON request log (FLASK_LOG_REQUESTS, identity/plumbing/headers.py:
# request_id, method, path, status, ms, ip; written in batches) is it, so gunicorn's own is off.
# A second line per request cost about 7% of the local API's throughput.
_access_log = os.environ.get("GUNICORN_ACCESS_LOG", "off")
accesslog = None if _access_log.lower() in ("", "off", "none") else _access_log
# If it is turned on: the path only (%(U)s), never the query string (%(r)s / %(q)s): authorization
# codes, tokens and id_token_hint travel in query strings. The referer (%(f)s) is left out for the
# same reason. %(u)s is the Basic-auth user name, i.e. a client_id, never its secret. The last field
# is the response's X-Request-Id, as in the app's request log.
access_log_format = '%(h)s - %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" rid=%({x-request-id}o)s'

#: the access line's fields the caller writes, and the characters each keeps: the Basic-auth user
#: name (a client id), the path (no route is longer; as the app's request log cuts it) and the user agent
_CALLER_FIELDS = {"u": 200, "U": 256, "a": 200}


def _printable(value: str, length: int) -> str:
    """The value cut to `length` characters and, unless it is printable ASCII, escaped as Python
    writes a string (a line break as \\n, an escape sequence as \\x1b)."""
    if len(value) > length:
        value = value[:length] + "..."
    return value if value.isascii() and value.isprintable() else value.encode("unicode_escape").decode("ascii")


class _AccessLogger(Logger):
    """gunicorn's logger, with the fields the caller chooses escaped and cut. gunicorn writes the
    path percent-decoded and the user name as base64 decodes it, and escapes only quotes: a %0A in a
    path, or a line break in a user name, wrote a line of the caller's making, an escape sequence
    reached the operator's terminal, and an 8 KiB path made an 8 KiB line."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name, length in _CALLER_FIELDS.items():
            value = atoms.get(name)
            if isinstance(value, str) and value != "-":
                atoms[name] = _printable(value, length)
        return atoms


logger_class = _AccessLogger


#: a query string: up to the next space or the end, but for a closing quote there (a request line's
#: repr); a quote inside it ("?state=it's&code=...") is part of it, not its end
_QUERY = re.compile(r"\?\S*?(?=['\"]?(?:\s|$))")


#: gunicorn's refusal of a chunked body whose size line is not one quotes that line: the body itself
#: when a client says `Transfer-Encoding: chunked` and sends the form unchunked (a client secret)
_CHUNK_SIZE = re.compile(r"(Invalid chunk size: )(b['\"](?!line over ).*)", re.DOTALL)


def _without_request_secrets(record: logging.LogRecord) -> bool:
    """The error log names a request by its URI when its worker timed out or failed ("Error
    handling request GET /account/reset-password?token=...") or its request line was refused:
    keep the path only there too; a chunk-size line it refused (a body not chunked as it said)
    by its length. At DEBUG it logs a client gone in the middle of its headers
    with the bytes it had read (a Basic client secret, a cookie): say how many instead. Added in
    on_starting, so the forked workers have it."""
    if isinstance(record.args, tuple):
        record.args = tuple(_QUERY.sub("", arg) if isinstance(arg, str)
                            else f"No more data after {len(arg.buf or b'')} bytes" if isinstance(arg, NoMoreData)
                            else arg for arg in record.args)
    if isinstance(record.msg, str) and "?" in record.msg:
        record.msg = _QUERY.sub("", record.msg)
    if isinstance(record.msg, str) and "Invalid chunk size: " in record.msg:
        record.msg = _CHUNK_SIZE.sub(lambda m: f"{m.group(1)}a line of {len(m.group(2)) - 3} bytes", record.msg)  # b'...'
    return True
