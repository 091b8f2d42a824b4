"""Browser sessions as rows: read the live one, start, touch and end one.

Every request with a session cookie reads its session here, and the sign-in writes one, so the
statements are built once, at import, and run on the autocommit connection (no pool checkout,
no transaction, no ORM object). What makes a session live is the service's rule
(services/browser_sessions.py), not this module's.

The table keeps a digest of each cookie sid (`sid_digest`), never the sid: whoever reads the
database (a backup, a replica, a leaked dump) holds no one's session. Functions here take the
cookie's sid and digest it, except those that say they take the digest.
"""

import hashlib

from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import User, UserSession
from .accounts import STILL_SIGNED_IN, still_user
from .connection import autocommit_connection
from .writes import Write, insert_if, write

_SESSIONS = UserSession.__table__
_LIVE_SESSION_USER = (
    select(User.id, User.subject, User.username, User.name, User.email, User.password_version, User.email_verified,
           UserSession.auth_time, UserSession.public_sid, UserSession.id, UserSession.created_at, UserSession.last_seen_at,
           UserSession.amr)
    .join(UserSession, UserSession.user_id == User.id)
    .where(UserSession.sid == bindparam("sid"), UserSession.revoked_at.is_(None))
)
# A new session is stored only while its user is as the sign-in checked them (STILL_SIGNED_IN):
# a password change, reset or disable that committed meanwhile ended the user's sessions, and
# must not miss this one.
_INSERT_SESSION = insert_if(_SESSIONS, ("sid", "public_sid", "user_id", "auth_time", "created_at", "last_seen_at",
                                        "client_id", "user_agent", "ip_address", "amr"), STILL_SIGNED_IN)
_END = (update(_SESSIONS).where(_SESSIONS.c.id == bindparam("session_row"), _SESSIONS.c.revoked_at.is_(None))
        .values(revoked_at=bindparam("stamp")))
_TOUCH = (update(_SESSIONS)
          .where(_SESSIONS.c.id == bindparam("session_row"), _SESSIONS.c.revoked_at.is_(None),
                 _SESSIONS.c.last_seen_at < bindparam("stamp"))
          .values(last_seen_at=bindparam("stamp")))


def sid_digest(sid: str) -> str:
    """What the table keeps of a cookie sid: its SHA-256, in hex (the sid is 192 random bits, so
    a fast hash is enough, as for the other tokens)."""
    return hashlib.sha256(sid.encode()).hexdigest()


def session_user(sid: str):
    """The unrevoked session with this (cookie) sid and its user, as one row: the user's id,
    subject, username, name, email, password_version and email_verified, then the session's auth_time,
    public_sid, row id, created_at, last_seen_at and amr. None if there is none."""
    return autocommit_connection().first(_LIVE_SESSION_USER, {"sid": sid_digest(sid)})


def session_insert(*, sid: str, public_sid: str, user_id: int, password_version: int, auth_time: int,
                   created_at: int, client_id: str | None = None, user_agent: str | None = None,
                   ip_address: str | None = None, amr: str = "pwd") -> Write:
    """The write that stores a new session, to run with the caller's others (writes.write): one
    row, or none if the user's password version is no longer `password_version` or the user was
    disabled (the caller then refuses the sign-in)."""
    return _INSERT_SESSION, {"sid": sid_digest(sid), "public_sid": public_sid, "user_id": user_id, "auth_time": auth_time,
                             "created_at": created_at, "last_seen_at": created_at, "client_id": client_id,
                             "user_agent": user_agent, "ip_address": ip_address, "amr": amr,
                             **still_user(user_id, password_version)}


def insert_session(insert: Write) -> bool:
    """Store a new session (`session_insert`'s write) on its own, committed; whether it was."""
    return write(insert) == [1]


def _write_one(statement, params: dict) -> None:
    """One UPDATE on the autocommit connection, apart from the request's own transaction (the
    user loader runs whenever a view first reads current_user, maybe amid the view's writes)."""
    connection = autocommit_connection()
    if connection.is_sqlite:
        with connection.sqlite_write() as run:
            run(statement, params)
    else:
        connection.write_first(statement, params)


def end_session_row(row_id: int, stamp: int) -> None:
    """Revoke a session by its row id, committed at once (apart from the request's transaction)."""
    _write_one(_END, {"session_row": row_id, "stamp": stamp})


def touch_session_row(row_id: int, stamp: int) -> None:
    """Move a session's last-seen time forward to `stamp`, committed at once (apart from the request's transaction)."""
    _write_one(_TOUCH, {"session_row": row_id, "stamp": stamp})


def live_session_user_id(digest: str) -> int | None:
    """The user of the unrevoked session whose sid column holds `digest`, or None."""
    return db.session.scalar(select(UserSession.user_id).where(UserSession.sid == digest, UserSession.revoked_at.is_(None)))


def adopt_stored_sid(sid: str, user_id: int) -> bool:
    """Give the user's unrevoked session whose sid column holds the cookie sid itself (a row a
    release before migration b8d4f1a6c3e9 wrote) the sid's digest, in the session's transaction;
    whether there was one."""
    return db.session.execute(update(UserSession).where(UserSession.sid == sid, UserSession.user_id == user_id,
                                                        UserSession.revoked_at.is_(None))
                              .values(sid=sid_digest(sid))).rowcount == 1


def revoke_session(digest: str, stamp: int) -> bool:
    """Revoke the session whose cookie sid has this `sid_digest`, in the session's transaction;
    False if it was revoked already (by a request that committed first, when they ran at once)."""
    return db.session.execute(update(UserSession).where(UserSession.sid == digest, UserSession.revoked_at.is_(None))
                              .values(revoked_at=stamp)).rowcount == 1


def revoke_user_sessions(user_id: int, stamp: int, *, keep_sid: str | None = None) -> None:
    """Revoke every session of a user but `keep_sid`, in the session's transaction."""
    sessions = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if keep_sid:
        sessions = sessions.where(UserSession.sid != sid_digest(keep_sid))
    db.session.execute(sessions.values(revoked_at=stamp))


def renew_sid(old_sid: str, new_sid: str) -> None:
    """Give the unrevoked session with (cookie) sid `old_sid` the sid `new_sid`, in the session's
    transaction: a copy of the old cookie no longer names it."""
    db.session.execute(update(UserSession).where(UserSession.sid == sid_digest(old_sid), UserSession.revoked_at.is_(None))
                       .values(sid=sid_digest(new_sid)))


def live_session_times(sid: str, user_id: int):
    """(public_sid, created_at, last_seen_at) of the user's unrevoked session with this (cookie) sid; None if none."""
    return db.session.execute(select(UserSession.public_sid, UserSession.created_at, UserSession.last_seen_at)
                              .where(UserSession.sid == sid_digest(sid), UserSession.user_id == user_id,
                                     UserSession.revoked_at.is_(None))).first()


def hand_over_public_sid(old_sid: str, new_sid: str, public_sid: str, spare_public_sid: str, stamp: int) -> bool:
    """Revoke the session `old_sid`, giving it `spare_public_sid`, and give its public id to the
    session `new_sid`, in the session's transaction; False (nothing changed) if `old_sid` had ended.
    The caller holds the user's row (services: continue_session says why)."""
    ended = db.session.execute(update(UserSession)
                               .where(UserSession.sid == sid_digest(old_sid), UserSession.public_sid == public_sid,
                                      UserSession.revoked_at.is_(None))
                               .values(revoked_at=stamp, public_sid=spare_public_sid)).rowcount
    if ended != 1:
        return False
    db.session.execute(update(UserSession).where(UserSession.sid == sid_digest(new_sid)).values(public_sid=public_sid))
    return True
