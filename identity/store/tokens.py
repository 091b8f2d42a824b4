"""Access tokens as rows: the bearer check's read, and the revocation list.

The bearer check runs `live_token_user` on every local API request: one statement, built once,
on the autocommit connection (no pool checkout, no transaction, no ORM object).
"""

from collections import namedtuple

from sqlalchemy import bindparam, exists, select

from ..extensions import db
from ..models import RevokedAccessToken, User
from .connection import autocommit_connection
from .mfa import second_factor_exists

_LIVE_TOKEN_USER = select(
    User.id, User.subject, User.username, User.email, User.name, User.password_version, User.password_changed_at,
    User.email_verified, User.pending_email,
    second_factor_exists(User.id).label("has_second_factor"),  # GET /localapi/account's mfa_enabled, in the same read
).where(User.subject == bindparam("sub"), User.enabled.is_(True),
        ~exists().where(RevokedAccessToken.jti == bindparam("jti")))
LiveUser = namedtuple("LiveUser", [column.key for column in _LIVE_TOKEN_USER.selected_columns])


def live_token_user(sub: str, jti: str):
    """The user with this subject as a plain row (LiveUser's fields), provided they are enabled and
    `jti` is not on the revocation list; None otherwise."""
    return autocommit_connection().first(_LIVE_TOKEN_USER, {"sub": sub, "jti": jti})


def is_revoked(jti: str) -> bool:
    return db.session.scalar(select(exists().where(RevokedAccessToken.jti == jti)))


def add_revoked(jtis, expires_at: int) -> None:
    """Put these access tokens on the revocation list, once each, in the session's transaction."""
    known = set(db.session.scalars(select(RevokedAccessToken.jti).where(RevokedAccessToken.jti.in_(jtis))))
    for jti in set(jtis) - known:
        db.session.add(RevokedAccessToken(jti=jti, expires_at=expires_at))
