"""Users as the sign-in reads and writes them: the user by login, the password rehash.

Built once, at import: every sign-in runs these, on the autocommit connection (a plain row, no
ORM object, no pool checkout).
"""

from collections import namedtuple

from sqlalchemy import ColumnElement, bindparam, exists, literal_column, or_, select, update

from ..extensions import db
from ..models import User
from .connection import autocommit_connection
from .mfa import second_factor_exists
from .row_locks import RowLock
from .writes import Write

_USERS = User.__table__


def login_matches(users) -> "ColumnElement[bool]":
    """Users are looked up by user name or email, normalized (as the parameter `key`); `users` is
    the table or an alias of it."""
    return or_(users.c.username_normalized == bindparam("key"), users.c.email_normalized == bindparam("key"))


LOGIN_MATCHES = login_matches(_USERS)
#: what a sign-in reads of its user (here, and as lockout.py's reservation returns it)
SIGN_IN_COLUMNS = (
    _USERS.c.id, _USERS.c.subject, _USERS.c.username, _USERS.c.name, _USERS.c.email, _USERS.c.password_version,
    _USERS.c.email_verified, _USERS.c.password_hash, _USERS.c.failed_attempts, _USERS.c.locked_until, _USERS.c.enabled,
    # whether a second step follows, in the same read. The user's id by its qualified name: in an
    # UPDATE's RETURNING, SQLAlchemy writes SQLite's columns unqualified, and a bare `id` inside
    # the subquery would be the second factor's own.
    second_factor_exists(literal_column(f"{_USERS.name}.id")).label("has_second_factor"),
)
_SIGN_IN_USER = select(*SIGN_IN_COLUMNS).where(LOGIN_MATCHES)
SignInUser = namedtuple("SignInUser", [column.key for column in SIGN_IN_COLUMNS])
# only over the hash the password was verified against: a password changed meanwhile stays changed
_SET_PASSWORD_HASH = update(_USERS).where(_USERS.c.id == bindparam("user_id"),
                                          _USERS.c.password_hash == bindparam("verified_hash")).values(
    password_hash=bindparam("password_hash"))


#: "the user a sign-in checked is still so": enabled, and the password version it read unchanged
#: (a password change, reset or disable since moves it on), for the parameters `still_user` gives
_STILL_SIGNED_IN_WHERE = (_USERS.c.id == bindparam("still_user"),
                          _USERS.c.password_version == bindparam("still_version"), _USERS.c.enabled.is_(True))
STILL_SIGNED_IN = exists().where(*_STILL_SIGNED_IN_WHERE)
#: STILL_SIGNED_IN with the user's row locked FOR SHARE (PostgreSQL; SQLite renders no lock, its one
#: write lock serialises the writers), for an insert that must not pass a password change, reset or
#: disable under way: that change holds the row FOR NO KEY UPDATE, which an insert's foreign key
#: (KEY SHARE) passes, so an insert judged by its snapshot (the old version, the change not yet
#: committed) was committed after the change had revoked the user's grants. FOR SHARE waits for
#: the change, then reads the row again (READ COMMITTED): the version moved on, nothing is stored.
STILL_SIGNED_IN_LOCKED = select(_USERS.c.id).where(*_STILL_SIGNED_IN_WHERE).with_for_update(read=True).exists()


def still_user(user_id: int, password_version: int) -> dict:
    """The parameters of STILL_SIGNED_IN."""
    return {"still_user": user_id, "still_version": password_version}


_USER_LOCK = RowLock(_USERS, _USERS.c.id)
_USER_KEY_LOCK = RowLock(_USERS, _USERS.c.id, key_change=True)


def lock_user_row(user_id: int) -> None:
    """Make the session's transaction the only one changing this user until it ends: on
    PostgreSQL the row's lock (FOR NO KEY UPDATE, as accounts.locked_user takes it); SQLite has
    no row locks and ignores FOR UPDATE, so there an UPDATE that changes nothing takes the
    database's write lock. Take it after any password hash, which must not hold SQLite's one
    write lock, and before the reads it protects. (A user id of no row locks nothing on
    PostgreSQL, in the same time.)"""
    _USER_LOCK(user_id)


def user_row_lock(user_id: int) -> tuple:
    """lock_user_row as a write to run first in a write_after transaction (store.writes), which
    takes it on PostgreSQL only: there a write of the user's codes and then of the user's row
    takes the row first, as the changes that lock it before they spend a code do."""
    return _USER_LOCK.on_postgresql(user_id)


def lock_user_row_for_key_change(user_id: int) -> None:
    """lock_user_row, for a change of the user's address (a unique key): FOR UPDATE on PostgreSQL,
    which holds off every insert of a row that refers to the user (row_locks.RowLock: not for a
    change that also ends the user's codes or sessions)."""
    _USER_KEY_LOCK(user_id)


def end_pending_email_change(user_id: int) -> None:
    """Drop the user's pending address change, in the session's transaction: the link mailed for
    it then applies nothing (verification.py: superseded)."""
    db.session.execute(update(User).where(User.id == user_id, User.pending_email.is_not(None))
                       .values(pending_email=None))


_KEEP_HASH = update(_USERS).where(_USERS.c.id == bindparam("user_id"),
                                  _USERS.c.password_hash == bindparam("verified_hash")).values(
    password_hash=_USERS.c.password_hash)


def hash_unchanged(user_id: int, verified_hash: str) -> bool:
    """Whether the user's password hash is still `verified_hash` (the one a current password was
    checked against, on a read without a lock), kept so until the session's commit: an UPDATE
    that changes nothing, of the row only while it has that hash, locks the row (PostgreSQL) or
    takes the database's write lock (SQLite) and answers: a change committed since the read
    (another change from the same current password, a reset) makes it False. Taken after the
    new password's hash, which must hold neither lock."""
    return db.session.execute(_KEEP_HASH, {"user_id": user_id, "verified_hash": verified_hash}).rowcount == 1


def password_version(user_id: int) -> int | None:
    """The user's password version as committed now (None: no such user)."""
    return db.session.scalar(select(User.password_version).where(User.id == user_id))


def move_password_version_on(user_id: int) -> None:
    """The user's password version plus one, in the session's transaction (the caller commits):
    every access token issued under the old one is refused, whether or not a row names it."""
    db.session.execute(update(User).where(User.id == user_id).values(password_version=User.password_version + 1))


def sign_in_user(key: str) -> SignInUser | None:
    """The user whose normalized user name or email is `key`, as committed (read only)."""
    found = autocommit_connection().first(_SIGN_IN_USER, {"key": key})
    return None if found is None else SignInUser._make(found)


def password_hash_update(user_id: int, password_hash: str, verified_hash: str) -> Write:
    """The write that replaces a user's password hash (a rehash), to run with the caller's others:
    only if the stored hash is still `verified_hash`, the one the password was checked against (a
    password change or reset committed during the check is not undone by the old password's rehash)."""
    return _SET_PASSWORD_HASH, {"user_id": user_id, "password_hash": password_hash, "verified_hash": verified_hash}
