"""Users as the sign-in reads and writes them: the user by login, the password rehash.

Built once, at import: every sign-in runs these, on the autocommit connection (a plain row, no
ORM object, no pool checkout).
"""

from collections import namedtuple

from sqlalchemy import bindparam, or_, select, update

from ..models import User
from .connection import autocommit_connection
from .mfa import second_factor_exists
from .writes import Write

# users are looked up by user name or email, normalized (as `key`)
LOGIN_MATCHES = or_(User.username_normalized == bindparam("key"), User.email_normalized == bindparam("key"))
_SIGN_IN_USER = select(
    User.id, User.subject, User.username, User.name, User.email, User.password_version, User.email_verified,
    User.password_hash, User.failed_attempts, User.locked_until, User.enabled,
    second_factor_exists(User.id).label("has_second_factor"),  # whether a second step follows, in the same read
).where(LOGIN_MATCHES)
SignInUser = namedtuple("SignInUser", [column.key for column in _SIGN_IN_USER.selected_columns])
_SET_PASSWORD_HASH = update(User.__table__).where(User.__table__.c.id == bindparam("user_id")).values(
    password_hash=bindparam("password_hash"))


def sign_in_user(key: str) -> SignInUser | None:
    """The user whose normalized user name or email is `key`, as committed (read only)."""
    found = autocommit_connection().first(_SIGN_IN_USER, {"key": key})
    return None if found is None else SignInUser._make(found)


def password_hash_update(user_id: int, password_hash: str) -> Write:
    """The write that replaces a user's password hash (a rehash), to run with the caller's others."""
    return _SET_PASSWORD_HASH, {"user_id": user_id, "password_hash": password_hash}
