"""Browser sessions stored in the database, so sign-out and password changes end them everywhere."""

import secrets
from typing import NamedTuple

from sqlalchemy import bindparam, insert, select, update

from ..autocommit import autocommit_connection
from ..clock import now
from ..extensions import db
from ..models import User, UserSession
from .writes import Write, write

# Built once: every request with a session cookie asks this, and the sign-in writes one.
_LIVE_SESSION_USER = (
    select(User.id, User.subject, User.username, User.name, User.email, User.password_version, UserSession.auth_time)
    .join(UserSession, UserSession.user_id == User.id)
    .where(UserSession.sid == bindparam("sid"), UserSession.revoked_at.is_(None))
)
_SESSION_LIVE = select(UserSession.id).where(UserSession.sid == bindparam("sid"), UserSession.revoked_at.is_(None))
_INSERT_SESSION = insert(UserSession.__table__).values(
    sid=bindparam("sid"), user_id=bindparam("user_id"), auth_time=bindparam("auth_time"), created_at=bindparam("created_at"))


class SessionUser(NamedTuple):
    """The signed-in user as pages and the authorization endpoint read it (read-only)."""

    id: int
    subject: str
    username: str
    name: str | None
    email: str | None
    password_version: int


class NewSession(NamedTuple):
    sid: str
    auth_time: int


def new_session(user_id: int, auth_time: int | None = None) -> tuple[NewSession, Write]:
    """A new browser session, and the write that stores it (run with the caller's others)."""
    stamp = now()
    session = NewSession(secrets.token_urlsafe(24), auth_time or stamp)
    return session, (_INSERT_SESSION, {"sid": session.sid, "user_id": user_id, "auth_time": session.auth_time,
                                       "created_at": stamp})


def start_session(user: User, auth_time: int | None = None) -> NewSession:
    session, store = new_session(user.id, auth_time)
    write(store)
    return session


def load_session(sid: str) -> tuple[SessionUser, int] | None:
    """Return the user of the live session with this sid and when they signed in, or None if revoked or unknown.

    One statement on the autocommit connection (every request with a session cookie asks this):
    no pool checkout, no transaction, no ORM object.
    """
    row = autocommit_connection().first(_LIVE_SESSION_USER, {"sid": sid})
    return (SessionUser(*row[:-1]), row[-1]) if row is not None else None


def session_is_live(sid: str | None) -> bool:
    """Whether the browser session `sid` may still vouch for what it started (a code redeemed
    after sign-out, or after a password change ended the session, must not yield tokens).

    The one place that decides "live": not revoked (sign-out, password change, operator). A code
    without a session (none is minted so) is not live.
    """
    if not sid:
        return False
    return autocommit_connection().first(_SESSION_LIVE, {"sid": sid}) is not None


def end_session(sid: str) -> None:
    db.session.execute(update(UserSession).where(UserSession.sid == sid, UserSession.revoked_at.is_(None)).values(revoked_at=now()))
    db.session.commit()
