"""Lockout: every password check reserves its place in the failure count before it hashes.

A check costs an Argon2 hash (~25 ms). Counting the failure after the hash let every attempt
that arrived meanwhile pass the lock check too: bursts got 17 to 45 guesses verified for a limit
of 10 (issue 15). Here an attempt first counts itself as a failure, in one conditional UPDATE
committed on its own, which is refused while the account is locked; the LOCKOUT_MAX_FAILURES-th
reservation sets the lock itself. So at most LOCKOUT_MAX_FAILURES passwords are verified before
a lock, whatever the number of workers and instances, on SQLite and on PostgreSQL, and a failure
is counted even if what comes after it (its audit event, the response) fails.

A wrong password needs nothing more. A right one settles its reservation (`settled`, written with
the success): a success resets the count, so it takes off the attempts reserved up to and
including its own and keeps those reserved after it (they are still being checked), and it lifts
the lock only if its own reservation set it. A right password in a request that then changes
nothing (a rejected new password) takes back its own reservation alone (`released`), leaving the
count as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, case, update

from ..store.connection import autocommit_connection
from ..clock import now
from ..extensions import db
from ..models import User
from ..store.writes import Write

_USERS = User.__table__
_COUNT, _LOCKED_UNTIL = _USERS.c.failed_attempts, _USERS.c.locked_until
_REACHES = _COUNT + 1 >= bindparam("limit")

# Built once. Refused (no row) while locked; otherwise counts the attempt, and the one that
# reaches the limit sets the lock and starts the count again (as a failure always did).
_RESERVE = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"), _LOCKED_UNTIL <= bindparam("now"))
    .values(failed_attempts=case((_REACHES, 0), else_=_COUNT + 1),
            locked_until=case((_REACHES, bindparam("until")), else_=_LOCKED_UNTIL))
    .returning(_COUNT, _LOCKED_UNTIL)
)
_SETTLE = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"))
    .values(failed_attempts=case((_COUNT > bindparam("place"), _COUNT - bindparam("place")), else_=0),
            locked_until=case((_LOCKED_UNTIL == bindparam("own_lock"), 0), (_LOCKED_UNTIL <= bindparam("now"), 0),
                              else_=_LOCKED_UNTIL))
)
_OWN_LOCK = _LOCKED_UNTIL == bindparam("own_lock")
_RELEASE = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"))
    .values(failed_attempts=case((_OWN_LOCK, bindparam("place") - 1), (_COUNT > 0, _COUNT - 1), else_=0),
            locked_until=case((_OWN_LOCK, 0), else_=_LOCKED_UNTIL))
)


@dataclass(frozen=True)
class Reservation:
    """An attempt counted as a failure before its password is checked."""

    user_id: int
    place: int  # its place in the count, 1 to LOCKOUT_MAX_FAILURES
    lock: int = 0  # the locked_until it set (it was the last one allowed), else 0

    @property
    def locked(self) -> bool:
        return self.lock > 0


def reserve(user_id: int) -> Reservation | None:
    """Count an attempt as failed, committed, before its hash; None while the user is locked (or gone)."""
    cfg, stamp = current_app.config, now()
    limit = cfg["LOCKOUT_MAX_FAILURES"]
    params = {"user_id": user_id, "now": stamp, "limit": limit, "until": stamp + cfg["LOCKOUT_SECONDS"]}
    connection = autocommit_connection()
    if connection.is_sqlite:
        with connection.sqlite_write() as run:
            row = run.first(_RESERVE, params)
    else:
        # a transaction of its own on a pooled connection, committed synchronously like every
        # security write (the autocommit connection may not wait for the WAL flush)
        with db.engine.begin() as own:
            row = own.execute(_RESERVE, params).first()
    if row is None:
        return None
    count, locked_until = row
    if count == 0:  # it reached the limit: the lock is its own
        return Reservation(user_id, limit, max(locked_until, 1))
    return Reservation(user_id, count)


def settled(reservation: Reservation) -> Write:
    """The write that settles a reservation whose password was right (see the module's docstring)."""
    return _SETTLE, {"user_id": reservation.user_id, "place": reservation.place,
                     "own_lock": reservation.lock or -1, "now": now()}


def released(reservation: Reservation) -> Write:
    """The write that takes back only this reservation (and its own lock): the password was right
    but the request changed nothing (a password change whose new password was rejected)."""
    return _RELEASE, {"user_id": reservation.user_id, "place": reservation.place, "own_lock": reservation.lock or -1}
