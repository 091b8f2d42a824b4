"""Access tokens as rows: the bearer check's read, and the revocation list.

The bearer check runs `live_token_user` on every local API request: one statement, built once,
on the autocommit connection (no pool checkout, no transaction, no ORM object).
"""

from collections import namedtuple

from sqlalchemy import bindparam, exists, func, select

from ..extensions import db
from ..models import RevokedAccessToken, User
from .connection import autocommit_connection
from .mfa import second_factor_exists
from .writes import insert_or_skip

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


#: the most jtis one statement lists: PostgreSQL takes at most 65,535 parameters in a statement, and
#: a family refreshed every second for the day its access tokens may live has 86,400 of them
JTIS_PER_STATEMENT = 10_000


def all_revoked(jtis) -> bool:
    """Whether every one of these access tokens is on the revocation list already (none given: no),
    asked JTIS_PER_STATEMENT at a time."""
    wanted = sorted(set(jtis))
    if not wanted:
        return False
    for start in range(0, len(wanted), JTIS_PER_STATEMENT):
        part = wanted[start:start + JTIS_PER_STATEMENT]
        listed = db.session.scalar(select(func.count()).select_from(RevokedAccessToken)
                                   .where(RevokedAccessToken.jti.in_(part)))
        if listed != len(part):
            return False
    return True


def add_revoked(jtis, expires_at: int) -> None:
    """Put these access tokens on the revocation list, once each, in the session's transaction.

    A jti already on the list, or being put there by a transaction not yet committed (two
    replays of one code at once), is skipped by the INSERT itself: a read of the listed ones
    first cannot see the other's row, and the second commit would break the primary key. Sorted,
    so that two such transactions wait for each other's rows in one order, never crosswise."""
    rows = [{"jti": jti, "expires_at": expires_at} for jti in sorted(set(jtis))]
    if rows:
        db.session.execute(insert_or_skip(RevokedAccessToken.__table__, ("jti",), ("jti", "expires_at")), rows)


def add_revoked_one(jti: str, expires_at: int) -> bool:
    """Put one access token on the revocation list, in the session's transaction, as add_revoked
    does; whether this statement put it there (False: it was listed already, or by a transaction
    that committed first: on PostgreSQL the INSERT waits for one that has not yet)."""
    statement = insert_or_skip(RevokedAccessToken.__table__, ("jti",), ("jti", "expires_at"))
    return db.session.execute(statement.execution_options(preserve_rowcount=True),
                              {"jti": jti, "expires_at": expires_at}).rowcount == 1
