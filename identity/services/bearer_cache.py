"""A worker's short memory of live access tokens: what each change waits for, and what it does not.

The bearer check asks the database one question per request: is this token's user still
there, its jti not revoked, its password version the token's? A worker may instead reuse the
answer for BEARER_CACHE_SECONDS. Two kinds of change would alter it:

- A password change (the page, the local API, the operator's `users set-password`) and removing
  a user. The code that commits one calls `wait_out_cached_answers` after its commit, which waits
  BEARER_CACHE_SECONDS if some worker may still hold an answer for the user (a lease, below), so
  once it has answered no worker anywhere accepts a token it invalidated. The wait is reserved
  for these: a password change costs two Argon2 hashes and is rate-limited per token and per IP.
- Revoking tokens by jti: the revocation endpoint (RFC 7009), a replayed code, a reused refresh
  token. These never wait, so no client can hold a worker idle by looping them. The worker that
  commits one forgets its own answers for those jtis (`forget`); another worker that remembered
  the token may still accept it until its answer expires: at most BEARER_CACHE_SECONDS after the
  revocation answered (RFC 7009 section 2 allows such a delay). Its answer was read before the
  revocation committed, and is reused for at most BEARER_CACHE_SECONDS after it was read.

The lease, for a token seen for the second time, by the holder (this worker):
1. notes the time, then writes a lease on the user's row: `bearer_cached_until`, the time its
   answer may be reused until (by its own clock; a transaction of its own, committed);
2. then asks the usual question, in a new statement, and keeps the answer until the time noted
   in 1 plus BEARER_CACHE_SECONDS.

The waiter, after committing a password change, reads that user's lease (a new statement)
and, if one was taken within the last minute, sleeps BEARER_CACHE_SECONDS before answering.

Why that is enough: an answer that predates the change was read (2) in a snapshot from before
the change's commit, so its lease (1), committed before that read began, was committed before
the change was, and the waiter's read after its commit sees it. The answer was taken at most
BEARER_CACHE_SECONDS before the waiter's read, so the sleep outlasts it. Any answer read after
the commit is already the new one. The wait is a length of time; a clock reading crosses
machines only in the waiter's test "taken within the last minute", which holds for clocks up to
a minute apart. A deleted row has no lease to read, so removing a user always waits.

A token seen once takes no lease (one read, as without the cache), so a one-off call, such as a
password change with a fresh token, never makes the change wait. BEARER_CACHE_SECONDS = 0
turns the cache off: every request asks the database, no change waits and nothing is delayed.
"""

from __future__ import annotations

import time

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..current import current_application
from ..extensions import db
from ..store import leases
from . import metrics

CLOCK_DIFFERENCE_ALLOWED_SECONDS = 60  # how far apart the instances' clocks may be
SEEN_WINDOW_SECONDS = 60  # a second use within this long of the first takes a lease
_MAX_ENTRIES = 10_000  # per worker, for each of the two maps below


def accepted_past_expiry(config) -> int:
    """How long past its `exp`, by this instance's clock, an access token may still be accepted
    somewhere: JWT_LEEWAY_SECONDS, on an instance whose clock is up to
    CLOCK_DIFFERENCE_ALLOWED_SECONDS behind."""
    return config["JWT_LEEWAY_SECONDS"] + CLOCK_DIFFERENCE_ALLOWED_SECONDS


def cache_seconds() -> float:
    return float(current_application().config["BEARER_CACHE_SECONDS"])


def _state() -> tuple[dict, dict]:
    """This worker's answers (jti -> (row, reusable until, sub)) and first sightings."""
    extensions = current_application().extensions
    state = extensions.get("identity_bearer_cache")
    if state is None:
        state = extensions["identity_bearer_cache"] = ({}, {})
    return state


def _forgotten() -> list:
    """How many times this worker has forgotten answers (one number, in a list: `forget` counts,
    `live_row` compares)."""
    return current_app.extensions.setdefault("identity_bearer_forgets", [0])


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
        answers.pop(jti, None)  # another thread may have dropped it meanwhile
    first = seen.get(jti)
    if first is None or clock - first > SEEN_WINDOW_SECONDS:
        if len(seen) >= _MAX_ENTRIES:
            seen.clear()
        seen[jti] = clock
        return read(sub, jti)
    # Noted before the lease is written: the answer is reused for less than the lease covers.
    _take_lease(sub, time.time() + ttl)
    forgotten = _forgotten()
    forgets = forgotten[0]  # before the read: a revocation forgotten after it may predate the answer
    row = read(sub, jti)
    if row is not None and forgotten[0] == forgets:  # else kept by no one: the next check reads again
        if len(answers) >= _MAX_ENTRIES:
            answers.clear()
        answers[jti] = (row, clock + ttl, sub)
    return row


def _take_lease(sub: str, until: float) -> None:
    """Write the lease, durably and committed on its own (store/leases.py), so a database crash
    cannot forget a lease in use. Once per BEARER_CACHE_SECONDS per token in use, per worker."""
    leases.take_lease(sub, until)


# --- the writers' side ------------------------------------------------------------------


def wait_out_cached_answers(user_id: int, *, removed: bool = False) -> bool:
    """Called after the commit of a password change (or a user's removal) by the code that
    committed it: return only once no worker can still accept the user's older tokens from memory.

    Sleeps BEARER_CACHE_SECONDS if a worker took a lease on the user in the last minute
    (always, for a removed user, whose row is gone); True if it slept. Call it right after the
    commit, with ids read before it: a read of the committed rows first (an expired object's
    attribute) opens a transaction that the sleep would hold open.
    """
    return wait_for_leases([user_id], always=removed)


def wait_for_leases(user_ids, *, always: bool = False) -> bool:
    """Sleep BEARER_CACHE_SECONDS if any of these users' answers may still be reused; True if it slept."""
    ttl = cache_seconds()
    if ttl <= 0 or not user_ids:
        return False
    if not always:
        if not leases.leased_since(user_ids, time.time() - CLOCK_DIFFERENCE_ALLOWED_SECONDS):
            return False
    metrics.count_bearer_cache_wait()
    time.sleep(ttl)
    return True


#: Session.info key: the jtis whose answers to forget again once the session's transaction commits
FORGET_AFTER_COMMIT = "identity.bearer_forget"


def forget(jtis) -> None:
    """Drop this worker's remembered answers for these tokens (being revoked): this worker refuses
    them as soon as the revocation has committed; other workers within BEARER_CACHE_SECONDS.

    Forgotten now, and again when the session's transaction (the revocation's) commits: a check on
    another thread of the worker in between read the token as live, rightly then, and would be
    remembered past the commit. A check whose read began before the commit and that would store
    its answer after it does not store it (`live_row` compares the count of forgets)."""
    if cache_seconds() <= 0:
        return
    jtis = list(jtis)
    _forget_now(jtis)
    db.session.info.setdefault(FORGET_AFTER_COMMIT, []).extend(jtis)


def _forget_now(jtis) -> None:
    answers, _ = _state()
    _forgotten()[0] += 1
    for jti in jtis:
        answers.pop(jti, None)


def _forget_after_commit(session: Session) -> None:
    jtis = session.info.pop(FORGET_AFTER_COMMIT, None)
    if jtis:
        _forget_now(jtis)


def _drop_after_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint of it
        session.info.pop(FORGET_AFTER_COMMIT, None)


event.listen(Session, "after_commit", _forget_after_commit)
event.listen(Session, "after_soft_rollback", _drop_after_rollback)
