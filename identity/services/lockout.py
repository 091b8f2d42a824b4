"""Lockout: every password check reserves its place in the failure count before it hashes.

A check costs an Argon2 hash (~25 ms). Counting the failure after the hash let every attempt
that arrived meanwhile pass the lock check too: bursts got 17 to 45 guesses verified for a limit
of 10 (issue 15). Here an attempt first counts itself as a failure, in one conditional UPDATE
committed on its own, which is refused while the account is locked; the LOCKOUT_MAX_FAILURES-th
reservation sets the lock itself. So at most LOCKOUT_MAX_FAILURES passwords are verified before
a lock, whatever the number of workers and instances, on SQLite and on PostgreSQL, and a failure
is counted even if what comes after it (its audit event, the response) fails.

A right password whose request the database then refuses (a write of it fails: a 503) takes back
its own reservation too (`taken_back_on_failure`): it was no guess, and a person who retries
during such a fault must not lock themselves out.

A wrong password needs nothing more. A right one settles its reservation (`settled`, written with
the success): a success resets the count, so it takes off the attempts reserved up to and
including its own and keeps those reserved after it (they are still being checked), and it lifts
the lock only if its own reservation set it. A right password in a request that then changes
nothing (a rejected new password) takes back its own reservation alone (`released`), leaving the
count as it was.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy.exc import DBAPIError

from ..clock import now
from ..errors import NotFound
from ..extensions import db
from ..store import accounts as user_rows
from ..store import lockout as store
from ..store.accounts import SignInUser
from ..store.writes import Write, write
from . import audit, metrics


@dataclass(frozen=True)
class Reservation:
    """An attempt counted as a failure before its password is checked."""

    user_id: int
    place: int  # its place in the count, 1 to LOCKOUT_MAX_FAILURES
    lock: int = 0  # the locked_until it set (it was the last one allowed), else 0

    @property
    def locked(self) -> bool:
        return self.lock > 0


def commit_refusal(reservation: Reservation) -> bool:
    """After a refused password, code or passkey, whose own audit event the caller has recorded:
    record the lock if this attempt's reservation set it, commit, then count the lock
    (identity_lockouts_total); whether it locked."""
    if reservation.locked:
        audit.record("account_locked", user_id=reservation.user_id)
    db.session.commit()
    if reservation.locked:
        metrics.count_lockout()
    return reservation.locked


def seconds_left(user_id: int) -> int:
    """How long the user's lock has left, at least 1 (what a refusal tells the person to wait)."""
    return max(store.locked_until(user_id) - now(), 1)


class UserGone(NotFound):
    """A reservation for a user who has no row: removed (`flask users remove`) since the caller
    read them. Not a locked account: nothing to count, audit or wait for."""


def reserve(user_id: int) -> Reservation | None:
    """Count an attempt as failed, committed, before its hash; None while the user is locked.

    A user removed meanwhile raises UserGone (a NotFound), the caller's transaction ended, so that
    no caller takes the removal for a lock. The refused statement cannot say which it was: a read
    tells them apart, after a refusal only (a reservation that counts, on every second step and
    every password change, stays one statement)."""
    cfg, stamp = current_app.config, now()
    row = store.record_sign_in_attempt(user_id, stamp=stamp, limit=cfg["LOCKOUT_MAX_FAILURES"],
                                       lock_until=stamp + cfg["LOCKOUT_SECONDS"])
    if row is not None:
        return _reservation(user_id, *row)
    if user_rows.password_version(user_id) is None:  # no such user
        db.session.rollback()
        raise UserGone("no such user")
    return None


def reserve_by_login(key: str) -> tuple[SignInUser, Reservation] | None:
    """reserve() for the enabled user whose normalized user name or email is `key`, and that user,
    in one statement; None (nothing counted) if there is no such user, or it is disabled or locked."""
    cfg, stamp = current_app.config, now()
    user = store.record_sign_in_attempt_by_login(key, stamp=stamp, limit=cfg["LOCKOUT_MAX_FAILURES"],
                                                 lock_until=stamp + cfg["LOCKOUT_SECONDS"])
    return None if user is None else (user, _reservation(user.id, user.failed_attempts, user.locked_until))


def _reservation(user_id: int, count: int, locked_until: int) -> Reservation:
    """The reservation an attempt made, from the count and lock it left."""
    if count == 0:  # it reached the limit: the lock is its own
        return Reservation(user_id, current_app.config["LOCKOUT_MAX_FAILURES"], max(locked_until, 1))
    return Reservation(user_id, count)


def settled(reservation: Reservation) -> Write:
    """The write that settles a reservation whose password was right (see the module's docstring)."""
    return store.settle_attempts(reservation.user_id, place=reservation.place, own_lock=reservation.lock or -1,
                                 stamp=now())


def released(reservation: Reservation) -> Write:
    """The write that takes back only this reservation (and its own lock): the password was right
    but the request changed nothing (a password change whose new password was rejected)."""
    return store.release_attempt(reservation.user_id, place=reservation.place, own_lock=reservation.lock or -1)


@contextmanager
def taken_back_on_failure(reservation: Reservation | None):
    """Around the writes of a request whose password (or code) was right: if the database refuses
    one of them, the request changed nothing, so its reservation is taken back (`released`, in a
    transaction of its own) before the error goes on; if that fails too, the count stays, as for
    any attempt the database lost."""
    try:
        yield
    except DBAPIError:
        db.session.rollback()
        if reservation is not None:
            try:
                write(released(reservation))
            except DBAPIError:
                db.session.rollback()
        raise
