"""Browser sessions stored in the database, so sign-out and password changes end them everywhere."""

import secrets

from sqlalchemy import select, update

from ..clock import now
from ..extensions import db
from ..models import User, UserSession


def start_session(user: User, auth_time: int | None = None) -> UserSession:
    session = UserSession(sid=secrets.token_urlsafe(24), user_id=user.id, auth_time=auth_time or now(), created_at=now())
    db.session.add(session)
    db.session.commit()
    return session


def load_session(sid: str) -> tuple[UserSession, User] | None:
    """Return the live session with this sid and its user, or None if revoked or unknown."""
    row = db.session.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id).where(UserSession.sid == sid)
    ).first()
    if row is None or row[0].revoked_at is not None:
        return None
    return row[0], row[1]


def end_session(sid: str) -> None:
    db.session.execute(update(UserSession).where(UserSession.sid == sid, UserSession.revoked_at.is_(None)).values(revoked_at=now()))
    db.session.commit()
