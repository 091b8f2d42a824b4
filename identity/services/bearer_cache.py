"""A worker's short memory of live access tokens, kept correct by leases the writers wait out.

The bearer check asks the database one question per request: is this token's user still
there, its jti not revoked, its password version the token's? A worker may instead reuse the
answer for BEARER_CACHE_SECONDS, because every change that would alter it waits that long after
its commit before it returns. When a password change (or a revocation, or removing a user) has
answered, no worker anywhere still accepts a token it invalidated.

The holder (this worker), for a token seen for the second time:
1. notes the time, then writes a lease on the user's row: `bearer_cached_until`, the time its
   answer may be reused until (by its own clock; a transaction of its own, committed);
2. then asks the usual question, in a new statement, and keeps the answer until the time noted
   in 1 plus BEARER_CACHE_SECONDS.

The writer, after committing a change for a user, reads that user's lease (a new statement)
and, if one was taken within the last minute, sleeps BEARER_CACHE_SECONDS before answering.

Why that is enough: an answer that predates the change was read (2) in a snapshot from before
the change's commit, so its lease (1), committed before that read began, was committed before
the change was, and the writer's read after its commit sees it. The answer was taken at most
BEARER_CACHE_SECONDS before the writer's read, so the writer's sleep outlasts it. Any answer
read after the commit is already the new one. The wait is a length of time; a clock reading
crosses machines only in the writer's test "taken within the last minute", which holds for
clocks up to a minute apart. A deleted row has no lease to read, so removing a user always waits.

A token seen once takes no lease (one read, as without the cache), so a one-off call, such as a
password change with a fresh token, never makes the change wait. BEARER_CACHE_SECONDS = 0
turns the cache off: every request asks the database and no change waits.
"""

from __future__ import annotations

import time

from flask import current_app
from sqlalchemy import bindparam, event, select, update

from ..autocommit import autocommit_connection
from ..extensions import db
from ..models import User

CLOCK_DIFFERENCE_ALLOWED_SECONDS = 60  # how far apart the instances' clocks may be
SEEN_WINDOW_SECONDS = 60  # a second use within this long of the first takes a lease
_MAX_ENTRIES = 10_000  # per worker, for each of the two maps below

_TAKE_LEASE = (
    update(User)
    .where(User.subject == bindparam("sub"),
           (User.bearer_cached_until.is_(None)) | (User.bearer_cached_until < bindparam("until")))
    .values(bearer_cached_until=bindparam("until"))
)
_LEASED_SINCE = select(User.id).where(User.id == bindparam("id"), User.bearer_cached_until > bindparam("since"))
_SESSION_KEY = "identity_bearer_invalidated"


def cache_seconds() -> float:
    return float(current_app.config["BEARER_CACHE_SECONDS"])


def _state() -> tuple[dict, dict]:
    """This worker's answers (jti -> (row, reusable until, monotonic)) and first sightings."""
    extensions = current_app.extensions
    state = extensions.get("identity_bearer_cache")
    if state is None:
        state = extensions["identity_bearer_cache"] = ({}, {})
    return state


def live_row(sub: str, jti: str, read):
    """The live-user row for a token: `read(sub, jti)` asks the database; its answer may be reused."""
    ttl = cache_seconds()
    if ttl <= 0:
        return read(sub, jti)
    answers, seen = _state()
    clock = time.monotonic()
    answer = answers.get(jti)
    if answer is not None:
        row, until, answer_sub = answer
        if clock < until and answer_sub == sub:
            return row
        del answers[jti]
    first = seen.get(jti)
    if first is None or clock - first > SEEN_WINDOW_SECONDS:
        if len(seen) >= _MAX_ENTRIES:
            seen.clear()
        seen[jti] = clock
        return read(sub, jti)
    # Noted before the lease is written: the answer is reused for less than the lease covers.
    _take_lease(sub, time.time() + ttl)
    row = read(sub, jti)
    if row is not None:
        if len(answers) >= _MAX_ENTRIES:
            answers.clear()
        answers[jti] = (row, clock + ttl, sub)
    return row


def _take_lease(sub: str, until: float) -> None:
    """Write the lease in a transaction of its own on a pooled connection, committed as durably
    as any other write (the autocommit connection may commit without waiting for the WAL flush:
    ROTATION_SYNCHRONOUS_COMMIT), so a database crash cannot forget a lease in use. Once per
    BEARER_CACHE_SECONDS per token in use, per worker."""
    with db.engine.begin() as connection:
        connection.execute(_TAKE_LEASE, {"sub": sub, "until": until})


# --- the writers' side ------------------------------------------------------------------


def invalidated(user_id: int, *, removed: bool = False) -> None:
    """Note that the session's transaction changes what a bearer check answers for this user.

    After its commit, the commit waits out any lease on the user (always, if the user is removed).
    """
    pending = db.session.info.setdefault(_SESSION_KEY, {})
    pending[user_id] = pending.get(user_id, False) or removed


def wait_for_leases(user_ids, *, always: bool = False) -> bool:
    """Sleep BEARER_CACHE_SECONDS if any of these users' answers may still be reused; True if it slept."""
    ttl = cache_seconds()
    if ttl <= 0 or not user_ids:
        return False
    if not always:
        since, reader = time.time() - CLOCK_DIFFERENCE_ALLOWED_SECONDS, autocommit_connection()
        if not any(reader.first(_LEASED_SINCE, {"id": user_id, "since": since}) for user_id in user_ids):
            return False
    time.sleep(ttl)
    return True


def _after_commit(session) -> None:
    pending = session.info.pop(_SESSION_KEY, None)
    if pending:
        wait_for_leases(list(pending), always=any(pending.values()))


def _after_rollback(session, previous_transaction) -> None:
    if not previous_transaction.nested:  # a savepoint's rollback leaves the transaction's notes
        session.info.pop(_SESSION_KEY, None)


def init_app(app) -> None:
    """Make every commit of the app's session wait out the leases its changes invalidated."""
    if not event.contains(db.session, "after_commit", _after_commit):
        event.listen(db.session, "after_commit", _after_commit)
        event.listen(db.session, "after_soft_rollback", _after_rollback)
