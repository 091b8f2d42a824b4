"""Browser sessions stored in the database, so sign-out and password changes end them everywhere.

A session has two identifiers. `sid` is the cookie's (Flask-Login's user id and the remember
cookie's content): a secret that only this server and the browser see. `public_sid` is the
one clients see: the ID and access tokens' `sid` claim, and the session_id stored with the
codes and refresh tokens issued in the session.

A session lives while it is not revoked, has been used within SESSION_IDLE_SECONDS and began
less than SESSION_ABSOLUTE_SECONDS ago (`within_lifetime`, the one rule). The rule is checked
on every request that uses the session (`load_session`), which ends a session past it (so it
stays ended even if the settings grow), and by `times_are_live` for a code issued in it (its
times read with the code, identity/store/issued_grants.py).
The last-seen time is written at most once a minute per session, not on every request.
"""

import secrets
from typing import NamedTuple

from flask import current_app

from .. import clock
from ..errors import NotFound
from ..extensions import db
from ..models import User
from ..store import browser_sessions as store
from ..store.accounts import lock_user_row
from ..store.writes import Write
from . import audit, logout
from .user_agents import caller_device

TOUCH_SECONDS = 60  # the last-seen time is written at most this often (less with a shorter idle timeout)


class SessionUser(NamedTuple):
    """The signed-in user as pages and the authorization endpoint read it (read-only)."""

    id: int
    subject: str
    username: str
    name: str | None
    email: str | None
    password_version: int
    email_verified: bool

    @classmethod
    def of(cls, user: User) -> "SessionUser":
        """The same read-only view of a users row (a sign-in step that loaded the ORM object)."""
        return cls(*(getattr(user, name) for name in cls._fields))


class NewSession(NamedTuple):
    sid: str
    auth_time: int
    public_sid: str


class LoadedSession(NamedTuple):
    user: SessionUser
    auth_time: int
    public_sid: str
    amr: str  # how the person signed in: RFC 8176 names, space-separated


def new_sid() -> str:
    """A new cookie sid: a new session's, or the one a session is given instead of its own
    (accounts.change_password renews the sid of the session it keeps)."""
    return secrets.token_urlsafe(24)


def new_session(user_id: int, auth_time: int | None = None, amr: str = "pwd", *, password_version: int,
                client_id: str | None = None) -> tuple[NewSession, Write]:
    """A new browser session, and the write that stores it (run with the caller's others). The
    write stores nothing if the user's password version is no longer `password_version` (the one
    the sign-in checked), or the user was disabled: a password change, reset or disable that
    committed during the sign-in ended the user's sessions, this one too; the caller refuses.

    `amr` names how the person signed in (RFC 8176, space-separated). `client_id` is the client
    the sign-in was for (a pending authorization request's, unchecked: the sessions page names it
    only if it is registered); the caller's device is kept with it."""
    stamp = clock.now()
    session = NewSession(new_sid(), auth_time or stamp, secrets.token_urlsafe(24))
    device = caller_device()
    return session, store.session_insert(sid=session.sid, public_sid=session.public_sid, user_id=user_id,
                                         password_version=password_version,
                                         auth_time=session.auth_time, created_at=stamp, amr=amr,
                                         client_id=client_id[:200] if client_id else None,
                                         user_agent=device.user_agent, ip_address=device.ip_address)


def start_session(user: User, auth_time: int | None = None, amr: str = "pwd", *,
                  client_id: str | None = None) -> NewSession:
    session, insert = new_session(user.id, auth_time, amr, password_version=user.password_version, client_id=client_id)
    if not store.insert_session(insert):
        raise NotFound("the user is disabled or their password changed")
    return session


def lifetime_bounds(stamp: int) -> tuple[int, int]:
    """The one rule, as bounds on the stored times: (last seen at or after, created at or after):
    used within the idle timeout and younger than the absolute lifetime. A query that must leave
    the ended sessions out before it limits the rows it reads puts them in its WHERE."""
    config = current_app.config
    return stamp - config["SESSION_IDLE_SECONDS"], stamp - config["SESSION_ABSOLUTE_SECONDS"]


def within_lifetime(created_at: int, last_seen_at: int, stamp: int) -> bool:
    """Whether a session is within its lifetime at `stamp` (lifetime_bounds)."""
    seen_since, created_since = lifetime_bounds(stamp)
    return last_seen_at >= seen_since and created_at >= created_since


def times_are_live(created_at: int | None, last_seen_at: int | None) -> bool:
    """Whether the unrevoked session with these times (read with a grant: None when there is no
    such session, or it was revoked) is live now: not idle, not too old. Read only: an ended
    session's row is revoked by the next request that uses its cookie, or removed by the purge."""
    return created_at is not None and last_seen_at is not None and within_lifetime(created_at, last_seen_at, clock.now())


def load_session(sid: str) -> LoadedSession | None:
    """The user of the live session with this (cookie) sid, when they signed in and the session's
    public id; None if revoked, unknown, idle or too old (the last two are ended here).

    One read on the autocommit connection (no pool checkout, no transaction, no ORM object); a
    write only when the session ends or its last-seen time is a minute old.
    """
    row = store.session_user(sid)
    if row is None:
        return None
    *user, auth_time, public_sid, row_id, created_at, last_seen_at, amr = row
    stamp = clock.now()
    if not within_lifetime(created_at, last_seen_at, stamp):
        store.end_session_row(row_id, stamp)
        return None
    touch = min(TOUCH_SECONDS, max(1, current_app.config["SESSION_IDLE_SECONDS"] // 4))
    if stamp - last_seen_at >= touch:
        store.touch_session_row(row_id, stamp)
    return LoadedSession(SessionUser(*user), auth_time, public_sid, amr or "pwd")


def remember_seconds(sid: str, user_id: int) -> int:
    """How long a "keep me signed in" cookie set now for the session `sid` may last: its
    REMEMBER_COOKIE_DURATION, but no later than the session's absolute end (at least 1 s)."""
    found = store.live_session_times(sid, user_id)
    duration = int(current_app.config["REMEMBER_COOKIE_DURATION"].total_seconds())
    if found is None:
        return duration
    return max(1, min(duration, found.created_at + current_app.config["SESSION_ABSOLUTE_SECONDS"] - clock.now()))


def continue_session(previous_sid: str, sid: str, user_id: int) -> str | None:
    """The same user signed in again in a browser whose live session was `previous_sid` (prompt=login,
    max_age, a forgotten sign-in): the new session `sid` takes over its public id, so the clients
    it issued to keep the `sid` they know and are told when the new one ends, and the previous one
    is revoked (its cookie is gone from the browser). The public id now the new session's; None
    if the previous session is not a live one of this user (the new session keeps its own).

    The user's row first (lock_user_row), as every change that ends her sessions takes it before
    their one UPDATE (accounts.revoke_grants_and_sessions): that UPDATE locks her sessions in the
    order it finds them, maybe the new one before the previous one, while the hand-over takes the
    previous one, then the new one; each held a row the other waited for (PostgreSQL aborted one)."""
    found = store.live_session_times(previous_sid, user_id)
    if found is None or not within_lifetime(found.created_at, found.last_seen_at, clock.now()):
        return None
    lock_user_row(user_id)  # (after the reads: SQLite takes its write lock here)
    handed = store.hand_over_public_sid(previous_sid, sid, found.public_sid, secrets.token_urlsafe(24), clock.now())
    db.session.commit()
    return found.public_sid if handed else None


def end_session(sid: str, reason: str = "signed_out", *, audited_for: int | None = None,
                how: str = "signed_out") -> "logout.EndedSession | None":
    """End the browser session with this cookie sid (end_stored_session)."""
    return end_stored_session(store.sid_digest(sid), reason, audited_for=audited_for, how=how)


def ended_meanwhile(sid: str) -> "logout.EndedSession | None":
    """The session with this cookie sid and its clients, after end_session found it ended by
    another request since this one loaded it (logout.session_ended_meanwhile)."""
    return logout.session_ended_meanwhile(store.sid_digest(sid))


def previous_release_session(sid: str) -> tuple[str, str] | None:
    """(public sid, user subject) of the live session a release before migration b8d4f1a6c3e9
    started with this cookie sid (end_previous_release_session), or None."""
    return logout.live_session(sid)


def end_previous_release_session(sid: str, how: str | None = "signed_out") -> "logout.EndedSession | None":
    """End the live session that an instance of a release before migration b8d4f1a6c3e9 started
    with this cookie sid during a rolling update: its row keeps the sid itself, not its digest,
    so load_session never finds it, while that release's instances, still serving, do. The
    cookie's holder signing out here, or another user signing in in that browser, ends it for
    them too, and its clients are told. Audited as end_session is (`how`; None: not recorded).
    None if there is no such live session."""
    user_id = store.live_session_user_id(sid)
    if user_id is None:
        return None
    return end_stored_session(sid, audited_for=user_id if how is not None else None, how=how or "")


def adopt_previous_release_session(sid: str, user_id: int) -> bool:
    """Whether the user had a live session that a release before migration b8d4f1a6c3e9 started
    with this cookie sid (end_previous_release_session), now keyed by the sid's digest as this
    release keys its own (committed): the user signing in again in that browser continues it
    (continue_session), as a session of this release."""
    adopted = store.adopt_stored_sid(sid, user_id)
    db.session.commit()
    return adopted


def previous_release_session_user(sid: str) -> int | None:
    """The user of the live session a release before migration b8d4f1a6c3e9 started with this
    cookie sid (end_previous_release_session), or None: one read, before any write."""
    return store.live_session_user_id(sid)


def end_stored_session(digest: str, reason: str = "signed_out", *, audited_for: int | None = None,
                       how: str = "signed_out") -> "logout.EndedSession | None":
    """End a browser session; its clients are told (back-channel logout) in the same transaction.
    The session's public id and clients, for the front channel; None if it had already ended.
    Two requests ending it at once (sign-out clicked twice) queue its clients' tokens once: the
    one whose revocation lost drops what it queued, and gets None (it had ended meanwhile).
    With `audited_for` (the user's id: a sign-out), the end is recorded as `session_ended`
    (reason `how`), kept only with the revocation that won."""
    ended = logout.session_ended(digest, reason)
    if audited_for is not None and ended is not None:
        audit.record("session_ended", user_id=audited_for, detail={"reason": how})
    if store.revoke_session(digest, clock.now()):
        db.session.commit()
        return ended
    db.session.rollback()
    return None
