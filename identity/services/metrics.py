"""The Prometheus metrics: every one is defined here, and counted through a named function.

Code that has something to count calls one of the functions below (`count_sign_in("success")`),
never prometheus_client itself, so the names, help texts and label sets live in one place and
stay bounded: a label takes its value from a fixed list here, a registered client id (anything
else is "other") or a Flask endpoint name ("unmatched" for a path no route serves). A user name
or an address is never a label; each label value is a series every scrape carries for ever.

Multiprocess mode: prometheus_client chooses where values live when it is first imported. With
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets and cleans it before the workers start), each
worker writes its values to memory-mapped files in that directory and a scrape, answered by any
one worker, adds up every worker's files (`exposition`). Without it (the development server, the
tests) the values are this process's own. An operator's command run with the same
PROMETHEUS_MULTIPROC_DIR adds its counts too (`users set-password`: channel "cli").
"""

from __future__ import annotations

import atexit
import fcntl
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess, values

from .clients import cached_client
from .metrics_files import METRICS_LOCK, fold_into_gone

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
UNMATCHED = "unmatched"

SIGN_IN_RESULTS = ("success", "failure", "locked")
MFA_METHODS = ("totp", "recovery_code", "webauthn")
MFA_RESULTS = ("success", "failure")
GRANT_TYPES = ("authorization_code", "implicit", "hybrid", "client_credentials", "password", "refresh_token")
PASSWORD_CHANNELS = ("page", "api", "reset", "cli")
DELIVERY_RESULTS = ("delivered", "failed", "abandoned")  # a try that failed is retried; abandoned: gave up
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # e.g. an operator's command run with the service's environment
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


class _ProcessId:
    """This process's id, read once and again after a fork. prometheus_client asks for it on
    every count (to notice a fork and write to the new process's own file); os.getpid() is a
    system call each time, four per request."""

    def __init__(self):
        self.value = os.getpid()
        os.register_at_fork(after_in_child=self.refresh)

    def refresh(self) -> None:
        self.value = os.getpid()

    def __call__(self) -> int:
        return self.value


if values.ValueClass is not values.MutexValue:  # multiprocess mode; the metrics below are made with it
    values.ValueClass = values.MultiProcessValue(process_identifier=_ProcessId())
    # a process that ends normally (an operator's command, `flask purge` from cron) folds its own
    # files into the gone workers' (gunicorn.conf.py's child_exit does it for the workers, killed ones too)
    atexit.register(lambda: fold_own_files())

#: The metrics of this process (not prometheus_client's global registry: no process or platform
#: collectors, which in multiprocess mode would describe only the worker that answered).
REGISTRY = CollectorRegistry(auto_describe=True)

SIGN_INS = Counter("identity_sign_ins", "Password sign-ins, by result (locked: refused by the lockout).",
                   ["result"], registry=REGISTRY)
MFA_RESULTS_TOTAL = Counter("identity_mfa_results", "Second-factor checks, by method and result.",
                            ["method", "result"], registry=REGISTRY)
TOKENS_ISSUED = Counter("identity_tokens_issued", "Token responses, by grant type and client.",
                        ["grant_type", "client_id"], registry=REGISTRY)
REFRESH_TOKEN_REUSE = Counter("identity_refresh_token_reuse",
                              "Reuse of a rotated refresh token (its family was revoked), by client.",
                              ["client_id"], registry=REGISTRY)
CODE_REPLAYS = Counter("identity_authorization_code_replays",
                       "Second use of an authorization code (what it issued was revoked), by client.",
                       ["client_id"], registry=REGISTRY)
PASSWORD_CHANGES = Counter("identity_password_changes", "Passwords changed or set, by channel.",
                           ["channel"], registry=REGISTRY)
LOCKOUTS = Counter("identity_lockouts", "Accounts locked after too many wrong passwords (or second-factor codes).",
                   registry=REGISTRY)
BEARER_CACHE_WAITS = Counter("identity_bearer_cache_waits",
                             "Requests that waited BEARER_CACHE_SECONDS after their commit, until no worker "
                             "could still accept the user's older bearer tokens from memory.", registry=REGISTRY)
BACKCHANNEL_DELIVERIES = Counter("identity_backchannel_logout_deliveries",
                                 "Back-channel logout tokens sent, by result.", ["result"], registry=REGISTRY)
DATABASE_ERRORS = Counter("identity_database_errors",
                          "Requests answered 503 because the database failed or was unreachable.", registry=REGISTRY)
REQUEST_SECONDS = Histogram("identity_request_duration_seconds",
                            "Time from a request's arrival to its response, by Flask endpoint.",
                            ["endpoint"], buckets=LATENCY_BUCKETS, registry=REGISTRY)

# Every fixed label value starts at 0, so rate() and increase() see a series from the first scrape.
for _result in SIGN_IN_RESULTS:
    SIGN_INS.labels(_result)
for _channel in PASSWORD_CHANNELS:
    PASSWORD_CHANGES.labels(_channel)
for _result in DELIVERY_RESULTS:
    BACKCHANNEL_DELIVERIES.labels(_result)


def _one_of(value, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


def client_label(client_id) -> str:
    """A client id as a label: a registered client's id (the worker's snapshot), else "other"."""
    return client_id if cached_client(client_id) is not None else OTHER


# --- what the code calls ---------------------------------------------------------------------


def count_sign_in(result: str) -> None:
    """A password sign-in finished: "success", "failure" or "locked"."""
    SIGN_INS.labels(_one_of(result, SIGN_IN_RESULTS)).inc()


def count_mfa(method: str, result: str) -> None:
    """A second-factor check finished: method "totp", "recovery_code" or "webauthn"; result
    "success" or "failure"."""
    MFA_RESULTS_TOTAL.labels(_one_of(method, MFA_METHODS), _one_of(result, MFA_RESULTS)).inc()


_STOLEN_TOKEN_SERIES: set[str] = set()  # the client labels whose reuse and replay series exist here


def _stolen_token_series(label: str) -> None:
    """A client's reuse and replay series, made together and at 0: the operator's query 3 (metrics.md)
    adds them with `+`, which keeps only the clients present on both sides, and increase() cannot
    see the count that makes a series, so each must exist before a client's first reuse or replay."""
    if label not in _STOLEN_TOKEN_SERIES:
        REFRESH_TOKEN_REUSE.labels(label)
        CODE_REPLAYS.labels(label)
        _STOLEN_TOKEN_SERIES.add(label)


def count_token(grant_type: str, client_id) -> None:
    """A token response was issued (and kept) for this grant type and client."""
    label = client_label(client_id)
    TOKENS_ISSUED.labels(_one_of(grant_type, GRANT_TYPES), label).inc()
    _stolen_token_series(label)


def count_refresh_token_reuse(client_id) -> None:
    label = client_label(client_id)
    _stolen_token_series(label)
    REFRESH_TOKEN_REUSE.labels(label).inc()


def count_code_replay(client_id) -> None:
    label = client_label(client_id)
    _stolen_token_series(label)
    CODE_REPLAYS.labels(label).inc()


def count_password_change(channel: str) -> None:
    """A password was changed or set: "page", "api", "reset" or "cli"."""
    PASSWORD_CHANGES.labels(_one_of(channel, PASSWORD_CHANNELS)).inc()


def count_lockout() -> None:
    LOCKOUTS.inc()


def count_bearer_cache_wait() -> None:
    """A request slept out the bearer cache (bearer_cache.wait_for_leases): a password change, a
    removed or disabled user, whose tokens a worker had remembered. Only those may wait; a
    revocation, which any client can send at will, never does."""
    BEARER_CACHE_WAITS.inc()


def count_backchannel_delivery(result: str) -> None:
    """A back-channel logout token was sent: "delivered", "failed" (to be retried) or "abandoned"."""
    BACKCHANNEL_DELIVERIES.labels(_one_of(result, DELIVERY_RESULTS)).inc()


def count_database_error() -> None:
    DATABASE_ERRORS.inc()


_LATENCY_BY_ENDPOINT: dict[str, Histogram] = {}  # each endpoint's child, so a request skips labels()'s lock


def observe_request(endpoint: str, seconds: float) -> None:
    """A request was answered after `seconds`; `endpoint` is a Flask endpoint name or "unmatched"."""
    child = _LATENCY_BY_ENDPOINT.get(endpoint)
    if child is None:
        child = _LATENCY_BY_ENDPOINT[endpoint] = REQUEST_SECONDS.labels(endpoint)
    child.observe(seconds)


# --- the scrape --------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def fold_own_files() -> None:
    """fold_into_gone for this process, at its exit (atexit; a granian worker, which leaves with
    os._exit, calls it from a multiprocessing finalizer: identity/plumbing/granian_worker.py)."""
    try:
        fold_into_gone(multiprocess_dir(), os.getpid())
    except OSError:  # a directory gone or read-only: the files stay, and count as they did
        pass


def exposition() -> bytes:
    """The text format of every metric: every worker's values added up in multiprocess mode."""
    directory = multiprocess_dir()
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        # gunicorn.conf.py's child_exit adds a dead worker's values into the files of the workers
        # gone, then removes its own, holding this lock: a scrape reads them all in between, or none
        with open(os.path.join(directory, METRICS_LOCK), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            return generate_latest(registry)
    return generate_latest(REGISTRY)
