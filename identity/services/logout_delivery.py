"""Sending the queued logout tokens: outside every user's request, once each, retried for a while.

Where it runs. Each worker has a deliverer: a thread started when there is something to send
and gone when the queue is empty. A transaction that queues a delivery wakes its worker's
deliverer when it commits; and after a response, at most every BACKCHANNEL_LOGOUT_POLL_SECONDS,
a worker wakes its own (one clock read per request otherwise), which is how rows queued by
another instance, or left by a worker that died, are picked up. `flask logout-deliveries run`
sends what is due from the command line (with BACKCHANNEL_LOGOUT_POLL_SECONDS = 0 it is the
only sender). A user's request never waits on a client: it only writes the queue row.

Once each. A delivery is claimed with a lease (store/logout.py: one conditional UPDATE, so two
workers or instances never both hold it), sent, and settled by its lease holder. A worker that
dies between sending and settling leaves the row to be sent again when the lease runs out, with
the same `jti`, so the client can tell a repeat; nothing is lost.

Each attempt: the URI must still be the client's registered back-channel logout URI (else the
row is given up, never sent elsewhere); the token is signed then, with the current key; a POST
of `logout_token=...` with a short timeout, no redirect followed, and at most
BACKCHANNEL_LOGOUT_MAX_RESPONSE_BYTES of the answer read. 200 or 204 is delivered; anything else
is retried after BACKCHANNEL_LOGOUT_BACKOFF_SECONDS, doubling, until BACKCHANNEL_LOGOUT_RETRY_SECONDS
after it was queued, when it is given up (and audited).
"""

import http.client
import logging
import os
import random
import secrets
import socket
import ssl
import threading
import time
from urllib.parse import quote, urlencode, urlsplit

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.wsgi import ClosingIterator

from .. import clock
from ..config.issuer import configured_issuer
from ..extensions import db
from ..store import logout as store
from . import audit, metrics
from .clients import get_client
from .tokens import sign

log = logging.getLogger("identity.logout")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
WAKE_AFTER_COMMIT = "identity.logout_queued"  # Session.info key: the app whose deliverer to wake on commit
MAX_BACKOFF_SECONDS = 600
LEASE_MARGIN_SECONDS = 30  # a lease outlives the attempt's timeout by this much
ERROR_LENGTH = 200  # the column's size


def logout_token(*, iss: str, client_id: str, jti: str, subject: str | None, session_id: str | None) -> str:
    """Sign a logout token (Back-Channel Logout 1.0 section 2.4) with the current key: no nonce."""
    stamp = clock.now()
    claims = {"iss": iss, "aud": client_id, "iat": stamp, "exp": stamp + current_app.config["LOGOUT_TOKEN_LIFETIME_SECONDS"],
              "jti": jti, "events": {BACKCHANNEL_EVENT: {}}}
    if subject:
        claims["sub"] = subject
    if session_id:
        claims["sid"] = session_id
    return sign(claims, current_app.config["ID_TOKEN_SIGNING_ALG"], typ="logout+jwt")


def _printable(text: str) -> str:
    """The client's words as one line: a line break or control character in its answer would
    otherwise write a line of its choosing into the log (a forged JSON line) and the audit log."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)


def _ascii_target(target: str) -> str:
    """The path and query with each non-ASCII character percent-encoded (UTF-8), as a browser
    sends an IRI: http.client writes the request line in ASCII, and refused a registered
    "/déconnexion" (UnicodeEncodeError) on every attempt. The rest stays as registered."""
    return target if target.isascii() else "".join(c if c.isascii() else quote(c) for c in target)


def post_logout_token(uri: str, token: str, *, timeout: float, max_bytes: int) -> str | None:
    """POST the token to the client; None when it answered 200 or 204, else what went wrong.

    http.client follows no redirect; `timeout` bounds the connection and each read, and the whole
    attempt is abandoned once it has taken `timeout` (a client trickling its answer included):
    a timer shuts the socket then, which ends a read of the status line or headers that each
    byte would otherwise keep alive for another `timeout`.
    """
    parts = urlsplit(uri)
    deadline = time.monotonic() + timeout
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = _ascii_target((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    abandoned = threading.Event()
    watchdog = threading.Timer(timeout, _abandon, (connection, abandoned))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=urlencode({"logout_token": token}),
                           headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-cache"})
        response = connection.getresponse()
        if abandoned.is_set():  # the status and headers read before the socket was shut may look whole: they are not
            return f"TimeoutError: timed out (no complete answer within {timeout:g} s)"
        if response.status in (200, 204):
            return None
        body = b""
        while len(body) < max_bytes and time.monotonic() < deadline:
            chunk = response.read1(max_bytes - len(body)) if hasattr(response, "read1") else response.read(max_bytes)
            if not chunk:
                break
            body += chunk
        return f"HTTP {response.status}: {_printable(body[:80].decode('utf-8', 'replace'))}"
    except Exception as err:  # refused, reset, timed out, not HTTP, a URI the socket layer rejects: an attempt failed
        if abandoned.is_set():
            return f"TimeoutError: timed out (no complete answer within {timeout:g} s)"
        return f"{err.__class__.__name__}: {_printable(str(err))}"
    finally:
        watchdog.cancel()
        connection.close()


def _abandon(connection: http.client.HTTPConnection, abandoned: threading.Event) -> None:
    """End an attempt past its deadline: shut its socket, so the read blocked on it returns."""
    abandoned.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass


def _retry_values(row, error: str, stamp: int) -> dict:
    attempts = row.attempts + 1
    wait = min(current_app.config["BACKCHANNEL_LOGOUT_BACKOFF_SECONDS"] * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
    values = {"attempts": attempts, "last_error": error[:ERROR_LENGTH]}
    deadline = row.created_at + current_app.config["BACKCHANNEL_LOGOUT_RETRY_SECONDS"]
    if stamp >= deadline:
        return {**values, "gave_up_at": stamp}
    # a backoff that would pass the window's end is cut short: one last attempt at it
    return {**values, "next_attempt_at": min(stamp + wait, deadline)}


def deliver(row, owner: str) -> str:
    """Make one attempt at a claimed delivery and settle it: "delivered", "retry", "given_up", or
    "dropped" (given up unsent: the URI is no longer the client's, or the client now requires a
    `sid` the token has not)."""
    cfg = current_app.config
    client = get_client(row.client_id)
    registered = client.backchannel_logout_uri if client is not None and client.enabled else None
    reason = "the URI is no longer registered" if registered != row.uri else None
    if reason is None and client.backchannel_logout_session_required and not row.session_id:
        # queued without a sid before the client required one: it would refuse the token (queue() skips such a grant)
        reason = "the client now requires a sid, which this token has not"
    if reason is not None:
        db.session.rollback()
        store.settle(row.id, owner, {"gave_up_at": clock.now(), "last_error": reason})
        log.warning("logout delivery %s to %s dropped: %s", row.id, row.client_id, reason)
        return "dropped"
    iss = row.issuer or configured_issuer()  # queued where no issuer was known: the configured one now
    token = iss and logout_token(iss=iss, client_id=row.client_id, jti=row.jti, subject=row.subject,
                                 session_id=row.session_id)
    db.session.rollback()  # no transaction (or snapshot) held while waiting on the network
    error = "no issuer known (set ISSUER)" if not token else post_logout_token(
        row.uri, token, timeout=cfg["BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS"],
        max_bytes=cfg["BACKCHANNEL_LOGOUT_MAX_RESPONSE_BYTES"])
    stamp = clock.now()
    if error is None:
        store.settle(row.id, owner, {"delivered_at": stamp, "attempts": row.attempts + 1, "last_error": None})
        return "delivered"
    values = _retry_values(row, error, stamp)
    store.settle(row.id, owner, values)
    if "gave_up_at" in values:
        log.warning("logout delivery %s to %s given up after %s attempts: %s", row.id, row.client_id,
                    values["attempts"], error)
        audit.record("backchannel_logout_failed", client_id=row.client_id,
                     detail={"attempts": values["attempts"], "error": error[:ERROR_LENGTH]})
        db.session.commit()
        return "given_up"
    return "retry"


def deliver_due(limit: int = 100) -> dict[str, int]:
    """Claim and attempt due deliveries, one at a time, at most `limit`; outcomes counted.

    Taken in turns by client: one of each client with something due, then another round. Taken
    by age alone, a client whose endpoint takes the whole timeout to fail (or to answer), with
    many tokens queued to itself (each revocation of its own refresh tokens queues one), held
    every other client's logouts back behind all of them."""
    owner = secrets.token_hex(8)
    counts = {"delivered": 0, "retry": 0, "given_up": 0}
    lease = int(current_app.config["BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS"]) + LEASE_MARGIN_SECONDS
    served: set[str] = set()  # the clients this round has made an attempt for
    for _ in range(limit):
        stamp = clock.now()
        row = store.claim_due(owner, stamp, stamp + lease, served)
        if row is None and served:  # every client with something due had its turn: the next round
            served.clear()
            row = store.claim_due(owner, stamp, stamp + lease)
        if row is None:
            break
        served.add(row.client_id)
        outcome = deliver(row, owner)
        if outcome == "dropped":  # given up, but nothing was sent: no delivery to count in the metrics
            counts["given_up"] += 1
            continue
        counts[outcome] += 1
        metrics.count_backchannel_delivery({"retry": "failed", "given_up": "abandoned"}.get(outcome, outcome))
    return counts


class Deliverer:
    """A worker's sender thread: started on demand, gone when nothing is left to send."""

    def __init__(self, app: Flask):
        self.app = app
        self.poll = float(app.config["BACKCHANNEL_LOGOUT_POLL_SECONDS"])
        self.next_check = time.monotonic() + self.poll * random.random()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def wake(self) -> None:
        """Look at the queue now (start the thread if it is not running in this process)."""
        if self.poll <= 0:
            return
        with self._lock:
            self._wake.set()
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="logout-deliveries", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self._pass()
            with self._lock:
                if wait is None and not self._wake.is_set():
                    self._thread = None
                    return
            self._wake.wait(wait or 0)

    def _pass(self) -> float | None:
        """Send what is due; seconds until the next look, or None when the queue is empty."""
        try:
            with self.app.app_context():
                try:
                    deliver_due()
                    due = store.next_due()
                finally:
                    db.session.remove()
        except SQLAlchemyError as err:  # the database is away: one line (the error pages log the outage), look again later
            log.warning("logout delivery pass skipped: database unavailable: %s", type(err).__name__)
            return self.poll
        except Exception:  # anything else is a defect: its traceback, and look again later
            log.exception("logout delivery pass failed")
            return self.poll
        if due is None:
            return None
        return min(max(due - clock.now(), 0.2), self.poll)

    def after_response(self) -> None:
        """Called once per response: wake the thread if the poll interval has passed."""
        stamp = time.monotonic()
        if stamp >= self.next_check:
            self.next_check = stamp + self.poll
            self.wake()


def deliverer(app: Flask) -> Deliverer:
    found = app.extensions.get("identity_logout_deliverer")
    if found is None:
        found = app.extensions["identity_logout_deliverer"] = Deliverer(app)
    return found


def _wake_after_commit(session: Session) -> None:
    app = session.info.pop(WAKE_AFTER_COMMIT, None)
    if app is not None:
        deliverer(app).wake()


def _forget_after_rollback(session: Session, previous_transaction) -> None:
    session.info.pop(WAKE_AFTER_COMMIT, None)


def init_app(app: Flask) -> None:
    """Wake the deliverer when a transaction that queued a delivery commits."""
    deliverer(app)
    if not event.contains(Session, "after_commit", _wake_after_commit):
        event.listen(Session, "after_commit", _wake_after_commit)
        event.listen(Session, "after_soft_rollback", _forget_after_rollback)


class DeliverAfterResponses:
    """WSGI layer: after a response, at most every poll interval, wake the worker's deliverer."""

    def __init__(self, app: Flask, wsgi_app):
        self.deliverer = deliverer(app)
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        iterable = self.wsgi_app(environ, start_response)
        if time.monotonic() < self.deliverer.next_check:
            return iterable
        return ClosingIterator(iterable, self.deliverer.after_response)


def layer(app: Flask, wsgi_app):
    """Look for due deliveries after responses, unless BACKCHANNEL_LOGOUT_POLL_SECONDS is 0."""
    return DeliverAfterResponses(app, wsgi_app) if float(app.config["BACKCHANNEL_LOGOUT_POLL_SECONDS"]) > 0 else wsgi_app
