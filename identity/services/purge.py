"""Removing what no longer serves: expired grants, old revocation entries, ended sessions, old audit.

Retention, kind by kind (each row is removed once its condition holds):

- authorization codes: CODE_TOMBSTONE_SECONDS (a day) after they expire. A used code is a
  tombstone: presenting it again revokes what it issued. No access token lives longer than a
  day, so after that a replay of a code that issued no refresh token has nothing left to revoke;
  the refresh tokens of a code's family outlive it (up to their family's end), and a replay
  after the purge no longer ends them: it is refused as an unknown code.
- refresh tokens: once expired (used, revoked or not). A rotated token is kept until then, so
  its reuse still revokes its family; past its expiry it is refused before reuse is checked.
- revoked access tokens (the deny list): once the token's expiry plus JWT_LEEWAY_SECONDS, plus
  a minute (CLOCK_DIFFERENCE_ALLOWED_SECONDS: another instance's clock may be behind), has
  passed, when the token is refused without the list.
- standalone access tokens (implicit and password-grant tokens outside any family, kept so that
  revoking the app can revoke them): likewise, once expired plus JWT_LEEWAY_SECONDS plus a minute.
- browser sessions: once ended (signed out, revoked, idle past SESSION_IDLE_SECONDS or older
  than SESSION_ABSOLUTE_SECONDS); an ended session never comes back.
- session clients (which clients a session issued to, for logout): once their session is gone.
- logout deliveries: LOGOUT_DELIVERY_RETENTION_SECONDS after they were delivered or given up.
- one-time account tokens (reset and verification links): an hour after they expire (used or
  not), so the hourly count of reset mails per account (services/recovery.py) still sees them.
- audit events: after AUDIT_RETENTION_DAYS.

`purge()` (the `flask purge` command) removes everything due, in batches. A serving worker
also runs one bounded pass (`purge_pass`, at most PURGE_BATCH_SIZE rows of each kind) at most
every PURGE_INTERVAL_SECONDS, after a response has been sent (`PurgeAfterResponses`), and
BACKLOG_PASS_SECONDS after a pass that removed a full batch of some kind (so a worker's purge
keeps up with a busy server's rows, up to PURGE_BATCH_SIZE of each kind a second):

- After a response rather than in a background thread: it needs no thread to start after
  gunicorn forks, stop at exit or be kept apart from each test's app, and it never runs inside
  a request's handling (a sync worker runs it between two requests). It delays the worker's next request by one bounded pass
  (nine DELETEs of at most PURGE_BATCH_SIZE rows each, found through indexes), once an interval; a
  worker that serves nothing purges nothing, and there is then nothing to slow down either.
- Several workers and instances together: each kind is its own short transaction that
  deletes rows by key among those due (`DELETE ... WHERE key IN (SELECT key ... LIMIT n)`).
  Two passes at once delete disjoint rows or find them gone (0 rows), never one row twice; a
  pass that fails (a PostgreSQL deadlock between two passes, SQLite busy, the database away)
  is logged and ends at the kind that failed, to be redone by the next. The first pass of each
  worker comes at a random point in its first interval, so workers started together do not
  purge together.
"""

import logging
import random
import threading
import time

from flask import Flask, current_app
from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wsgi import ClosingIterator

from .. import clock
from ..errors import IdentityError
from ..extensions import db
from ..models import (AccountToken, AuditEvent, AuthorizationCode, LogoutDelivery, RefreshToken, RevokedAccessToken,
                      SessionClient, StandaloneAccessToken, UserSession)
from ..store import logout as logout_rows
from ..store.writes import write
from . import audit, bearer_cache

log = logging.getLogger("identity.purge")

DAY = 86400
HOUR = 3600
#: after a pass that removed a full batch of some kind, the next one is due this soon (a backlog)
BACKLOG_PASS_SECONDS = 1.0


def _bounded_delete(model, key, condition):
    """DELETE at most :limit rows of `model` that meet `condition` (built once, values bound)."""
    return delete(model).where(key.in_(select(key).where(condition).limit(bindparam("limit"))))


# (kind, statement, the parameters it takes from (stamp, config)); the kinds in the order they are purged
_KINDS = (
    ("authorization_codes",
     _bounded_delete(AuthorizationCode, AuthorizationCode.id, AuthorizationCode.expires_at < bindparam("code_before")),
     lambda stamp, cfg: {"code_before": stamp - cfg["CODE_TOMBSTONE_SECONDS"]}),
    ("refresh_tokens",
     _bounded_delete(RefreshToken, RefreshToken.id, RefreshToken.expires_at < bindparam("refresh_before")),
     lambda stamp, cfg: {"refresh_before": stamp}),
    ("revoked_access_tokens",
     _bounded_delete(RevokedAccessToken, RevokedAccessToken.jti, RevokedAccessToken.expires_at < bindparam("jti_before")),
     lambda stamp, cfg: {"jti_before": stamp - bearer_cache.accepted_past_expiry(cfg)}),
    ("standalone_access_tokens",
     _bounded_delete(StandaloneAccessToken, StandaloneAccessToken.jti,
                     StandaloneAccessToken.expires_at < bindparam("standalone_before")),
     lambda stamp, cfg: {"standalone_before": stamp - bearer_cache.accepted_past_expiry(cfg)}),
    ("user_sessions",
     # the complement of sessions.within_lifetime, or revoked
     _bounded_delete(UserSession, UserSession.id, or_(UserSession.revoked_at.is_not(None),
                                                      UserSession.last_seen_at < bindparam("seen_before"),
                                                      UserSession.created_at < bindparam("created_before"))),
     lambda stamp, cfg: {"seen_before": stamp - cfg["SESSION_IDLE_SECONDS"],
                         "created_before": stamp - cfg["SESSION_ABSOLUTE_SECONDS"]}),
    ("session_clients",
     _bounded_delete(SessionClient, SessionClient.id, logout_rows.ORPHANED_SESSION_CLIENT),
     lambda stamp, cfg: {}),
    ("logout_deliveries",
     _bounded_delete(LogoutDelivery, LogoutDelivery.id, logout_rows.finished_before("logout_before")),
     lambda stamp, cfg: {"logout_before": stamp - cfg["LOGOUT_DELIVERY_RETENTION_SECONDS"]}),
    ("account_tokens",
     _bounded_delete(AccountToken, AccountToken.id, AccountToken.expires_at < bindparam("account_token_before")),
     lambda stamp, cfg: {"account_token_before": stamp - HOUR}),
    ("audit_events",
     _bounded_delete(AuditEvent, AuditEvent.id, AuditEvent.at < bindparam("audit_before")),
     lambda stamp, cfg: {"audit_before": stamp - cfg["AUDIT_RETENTION_DAYS"] * DAY}),
)
KINDS = tuple(kind for kind, _, _ in _KINDS)
#: a kind whose rows fall due as another kind's go (a session's clients once the session is gone),
#: purged again while that one has a backlog, even after a pass that found less than a batch of it
_FOLLOWS = {"session_clients": "user_sessions"}


#: The most rows of a kind one pass removes, whatever PURGE_BATCH_SIZE says (it has no upper bound):
#: SQLite binds no integer past 64 bits, and a LIMIT of 10**19 stopped every pass (OverflowError).
LARGEST_BATCH = 2 ** 31 - 1


def _after_1970(params: dict) -> dict:
    """The cut-offs, none before 0: a retention with no upper bound (AUDIT_RETENTION_DAYS=10**15, "for
    ever") put one past SQLite's 64-bit integers, and every purge failed (OverflowError); every
    stored time is after 1970, so a cut-off of 0 removes as little as any earlier one."""
    return {name: max(value, 0) for name, value in params.items()}


class PurgeStopped(IdentityError):
    """The operator's purge met a kind the database refused (locked, away): it must not look done."""


def purge_pass(limit: int | None = None, *, kinds=KINDS, strict: bool = False) -> dict[str, int]:
    """Remove at most `limit` (default PURGE_BATCH_SIZE) due rows of each kind; rows removed, by kind.

    Each kind is its own transaction. The first that fails is logged and rolled back, and ends the
    pass: the kinds after it count 0 and wait for the next pass. A locked or unavailable database
    fails each statement only after its busy or statement timeout, and a worker that tried every
    kind was held (and the requests queued behind it) for that timeout nine times over. `strict`
    (the operator's purge) raises PurgeStopped instead, naming the kind.
    """
    cfg = current_app.config
    limit = min(int(limit or cfg["PURGE_BATCH_SIZE"]), LARGEST_BATCH)
    stamp = clock.now()
    removed = {kind: 0 for kind in KINDS if kind in kinds}
    for kind, statement, params in _KINDS:
        if kind not in kinds:
            continue
        try:
            (removed[kind],) = write((statement, {**_after_1970(params(stamp, cfg)), "limit": limit}))
        except SQLAlchemyError as err:
            db.session.rollback()
            if strict:
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
                raise PurgeStopped(f"purge stopped at {kind} ({type(err).__name__}: {reason}); "
                                   "the kinds before it were purged, the rest were not: run it again") from None
            log.warning("purge pass stopped at %s: %s; the next pass retries", kind, err.__class__.__name__)
            break
    return removed


def purge(*, strict: bool = False) -> dict[str, int]:
    """Remove every due row, a batch of each kind at a time; rows removed, by kind (`strict`: see purge_pass)."""
    limit = min(int(current_app.config["PURGE_BATCH_SIZE"]), LARGEST_BATCH)
    total = dict.fromkeys(KINDS, 0)
    pending = KINDS
    while pending:
        removed = purge_pass(limit, kinds=pending, strict=strict)
        for kind, count in removed.items():
            total[kind] += count
        pending = tuple(kind for kind, count in removed.items()
                        if count >= limit or removed.get(_FOLLOWS.get(kind), 0) >= limit)
    return total


def purge_by_operator() -> dict[str, int]:
    """`flask purge`: every due row, then one audit event with the counts (the passes after
    responses are not audited: they are routine, and would fill the log they purge). A kind the
    database refuses ends it with PurgeStopped: the command fails rather than report a purge it did not do."""
    removed = purge(strict=True)
    audit.record("purged", detail={"removed": removed})
    db.session.commit()
    return removed


class PurgeAfterResponses:
    """WSGI layer: once an interval, run one purge pass when a response has been sent.

    The per-request cost is one clock read and a comparison. The pass runs in the response's
    close (after the server has written it), in a fresh app context, one at a time per worker.
    """

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.interval = float(app.config["PURGE_INTERVAL_SECONDS"])
        self.next_due = time.monotonic() + self.interval * random.random()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        iterable = self.wsgi_app(environ, start_response)
        if time.monotonic() < self.next_due or not self._claim():
            return iterable
        return ClosingIterator(iterable, self._run)

    def _claim(self) -> bool:
        """Take this interval's pass (False if another thread of this worker has it)."""
        with self._lock:
            stamp = time.monotonic()
            if stamp < self.next_due:
                return False
            self.next_due = stamp + self.interval
            return True

    def _soon(self) -> None:
        """A kind filled its batch: more is due. The next pass comes BACKLOG_PASS_SECONDS after this
        one, not an interval later: one batch an interval (500 rows every 300 s, 1.7 a second per
        worker) is less than a busy server adds (a refresh token per refresh), and its tables grew
        for ever. Each pass stays bounded; a worker spends at most one pass a second on a backlog."""
        with self._lock:
            self.next_due = min(self.next_due, time.monotonic() + min(BACKLOG_PASS_SECONDS, self.interval))

    def _run(self) -> None:
        try:
            with self.app.app_context():
                try:
                    removed = purge_pass()
                finally:
                    db.session.remove()
            if max(removed.values(), default=0) >= int(self.app.config["PURGE_BATCH_SIZE"]):
                self._soon()
            if any(removed.values()):
                log.info("purged %s", ", ".join(f"{kind} {count}" for kind, count in removed.items()))
        except SQLAlchemyError as err:  # the database is away: one line, the next pass retries
            log.warning("purge pass skipped: database unavailable: %s", type(err).__name__)
        except Exception:  # the response is sent; a failed pass must not surface, the next one retries
            log.exception("purge pass failed")


def layer(app: Flask, wsgi_app):
    """Purge after responses, if PURGE_INTERVAL_SECONDS is not 0 (its place: identity/plumbing/wsgi.py)."""
    return PurgeAfterResponses(app, wsgi_app) if float(app.config["PURGE_INTERVAL_SECONDS"]) > 0 else wsgi_app
