"""Browser sessions stored in the database, so sign-out and password changes end them everywhere."""

import secrets

from sqlalchemy import select, update

from ..clock import now
from ..extensions import db
from ..models import User, UserSession


def new_session(user_id: int, auth_time: int | None = None) -> UserSession:
    """Add a browser session to the caller's transaction (the caller commits)."""
    stamp = now()
    session = UserSession(sid=secrets.token_urlsafe(24), user_id=user_id, auth_time=auth_time or stamp, created_at=stamp)
    db.session.add(session)
    return session


def start_session(user: User, auth_time: int | None = None) -> UserSession:
    session = new_session(user.id, auth_time)
    db.session.commit()
    return session


def load_session(sid: str) -> tuple[User, int] | None:
    """Return the user of the live session with this sid and when they signed in, or None if revoked or unknown."""
    row = db.session.execute(
        select(User, UserSession.auth_time)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.sid == sid, UserSession.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row is not None else None


def end_session(sid: str) -> None:
    db.session.execute(update(UserSession).where(UserSession.sid == sid, UserSession.revoked_at.is_(None)).values(revoked_at=now()))
    db.session.commit()
