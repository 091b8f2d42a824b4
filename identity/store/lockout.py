"""The sign-in attempt counter as statements: reserve an attempt, settle it, release it.

What a reservation means, and why it comes before the hash, is services/lockout.py's business;
here is how each is written. Built once, at import: every password check runs one.
"""

from sqlalchemy import bindparam, case, select, update

from ..extensions import db

from ..models import User
from .accounts import SIGN_IN_COLUMNS, SignInUser, login_matches
from .connection import autocommit_connection
from .writes import Write

_USERS = User.__table__
_COUNT, _LOCKED_UNTIL = _USERS.c.failed_attempts, _USERS.c.locked_until
_REACHES = _COUNT + 1 >= bindparam("limit")

# Refused (no row) while locked; otherwise counts the attempt, and the one that reaches the
# limit sets the lock and starts the count again (as a failure always did).
_COUNTED = {"failed_attempts": case((_REACHES, 0), else_=_COUNT + 1),
            "locked_until": case((_REACHES, bindparam("until")), else_=_LOCKED_UNTIL)}
_RESERVE = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"), _LOCKED_UNTIL <= bindparam("now"))
    .values(_COUNTED)
    .returning(_COUNT, _LOCKED_UNTIL)
)
# The same, for the enabled user a login names (as the sign-in's read finds it), returning that
# user as the read would, with the count and lock as they now are: a sign-in's read and its
# reservation in one statement. No row: no such user, disabled, or locked.
_NAMED = _USERS.alias("named")
_RESERVE_BY_LOGIN = (
    update(_USERS)
    .where(_USERS.c.id == select(_NAMED.c.id).where(login_matches(_NAMED)).limit(1).scalar_subquery(),
           _USERS.c.enabled.is_(True), _LOCKED_UNTIL <= bindparam("now"))
    .values(_COUNTED)
    .returning(*SIGN_IN_COLUMNS)
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


def record_sign_in_attempt(user_id: int, *, stamp: int, limit: int, lock_until: int) -> tuple[int, int] | None:
    """Count an attempt of a user not locked at `stamp`, committed on its own: the new
    (failed_attempts, locked_until), the count back at 0 and the lock set to `lock_until` if it
    reached `limit`; None if the user is locked, or has no row."""
    return _run_reservation(_RESERVE, {"user_id": user_id, "now": stamp, "limit": limit, "until": lock_until})


def record_sign_in_attempt_by_login(key: str, *, stamp: int, limit: int, lock_until: int) -> SignInUser | None:
    """record_sign_in_attempt for the user whose normalized user name or email is `key`, if that
    user is enabled and not locked at `stamp`: the user, with failed_attempts and locked_until as
    the attempt left them; else None, and nothing written."""
    row = _run_reservation(_RESERVE_BY_LOGIN, {"key": key, "now": stamp, "limit": limit, "until": lock_until})
    return None if row is None else SignInUser._make(row)


def _run_reservation(statement, params: dict):
    """Run a reservation as one statement, its own transaction, committed as durably as every
    security write; the row it returned, or None."""
    connection = autocommit_connection()
    if connection.is_sqlite:
        with connection.sqlite_write() as run:
            return run.first(statement, params)
    return connection.durable_write_first(statement, params)


def settle_attempts(user_id: int, *, place: int, own_lock: int, stamp: int) -> Write:
    """The write that takes off the attempts counted up to `place` and lifts the lock if it is
    `own_lock` (or has passed), to run with the caller's others."""
    return _SETTLE, {"user_id": user_id, "place": place, "own_lock": own_lock, "now": stamp}


def release_attempt(user_id: int, *, place: int, own_lock: int) -> Write:
    """The write that takes back one attempt (at `place`) and its lock `own_lock`, if it set it."""
    return _RELEASE, {"user_id": user_id, "place": place, "own_lock": own_lock}


def locked_until(user_id: int) -> int:
    """The user's lock's end (epoch seconds; 0 or past: not locked), read in the caller's transaction."""
    return db.session.scalar(select(_LOCKED_UNTIL).where(_USERS.c.id == user_id)) or 0
