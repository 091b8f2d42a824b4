"""The logout queue and the clients each browser session issued to, as rows.

Claiming a delivery is one conditional UPDATE (`... WHERE id = (SELECT ... LIMIT 1)`): the row
is taken only if it is due and nobody holds a live lease on it, and the same conditions are
checked again on the row itself, so of two workers (or instances) that pick the same row,
exactly one takes it. On PostgreSQL the
candidate is picked with FOR UPDATE SKIP LOCKED, so a second worker passes over a row being
taken instead of queueing behind it; on SQLite the write lock serialises the claims.
"""

from sqlalchemy import Select, bindparam, exists, func, insert, or_, select, update

from ..extensions import db
from ..models import AuthorizationCode, LogoutDelivery, RefreshToken, SessionClient, User, UserSession
from . import refresh_families
from .browser_sessions import sid_digest
from .connection import autocommit_connection
from .writes import insert_or_skip, write

_DELIVERY = LogoutDelivery.__table__
_OPEN = (_DELIVERY.c.delivered_at.is_(None), _DELIVERY.c.gave_up_at.is_(None))


_SESSION_CLIENT_RECORDED = select(SessionClient.id).where(
    SessionClient.session_id == bindparam("session_id"), SessionClient.client_id == bindparam("client_id")).limit(1)


def session_client_recorded(session_id: str, client_id: str) -> bool:
    """Whether the record of remember_session_client is there: one read on the autocommit connection."""
    return autocommit_connection().first(_SESSION_CLIENT_RECORDED,
                                         {"session_id": session_id, "client_id": client_id}) is not None


def remember_session_client(session_id: str, client_id: str, stamp: int) -> None:
    """Record that a session issued a code or tokens to a client (once; committed)."""
    statement = insert_or_skip(SessionClient.__table__, ("session_id", "client_id"),
                               ("session_id", "client_id", "created_at"))
    write((statement, {"session_id": session_id, "client_id": client_id, "created_at": stamp}))


def session_clients(session_ids) -> list[tuple[str, str]]:
    """(session_id, client_id) for every client these sessions issued to. `session_ids`: a few
    public ids, or a query of them (user_live_sessions: a user may have more live sessions than
    a statement takes parameters)."""
    if isinstance(session_ids, (list, tuple, set, frozenset)) and not session_ids:
        return []
    rows = db.session.execute(select(SessionClient.session_id, SessionClient.client_id)
                              .where(SessionClient.session_id.in_(session_ids))
                              .order_by(SessionClient.id))
    return [tuple(row) for row in rows]


def session_by_sid(digest: str, *, ended_since: int | None = None) -> tuple[str, str] | None:
    """(public_sid, user subject) of the unrevoked session whose cookie sid has this digest
    (browser_sessions.sid_digest); with `ended_since`, of the session revoked at or after then."""
    query = (select(UserSession.public_sid, User.subject).join(User, User.id == UserSession.user_id)
             .where(UserSession.sid == digest))
    if ended_since is None:
        query = query.where(UserSession.revoked_at.is_(None))
    else:
        query = query.where(UserSession.revoked_at >= ended_since)
    row = db.session.execute(query).first()
    return tuple(row) if row else None


def user_live_sessions(user_id: int, *, keep_sid: str | None = None) -> Select:
    """The public ids of a user's unrevoked sessions, but the one with (cookie) sid `keep_sid`,
    as a query (for session_clients)."""
    query = select(UserSession.public_sid).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if keep_sid:
        query = query.where(UserSession.sid != sid_digest(keep_sid))
    return query


def user_live_families(user_id: int, stamp: int) -> list[tuple[str, str | None]]:
    """(client_id, session_id) of each of a user's refresh-token families that still has an
    unexpired, unrevoked token (refresh_families.UNREVOKED): the clients to tell of her end. One
    the refresh grant refuses by its password version is told too: its family was not ended, so
    its client was never told, and may still hold her sign-in."""
    rows = db.session.execute(
        select(RefreshToken.client_id, RefreshToken.session_id)
        .where(*refresh_families.UNREVOKED, RefreshToken.expires_at >= stamp)
        .distinct(), refresh_families.params(user_id))
    return [tuple(row) for row in rows]


def user_client_sessions(user_id: int, client_id: str, stamp: int) -> list[str]:
    """The public ids of the sessions a user's grants at a client belong to: their live sessions
    that issued to it, and the sessions of their live refresh-token families there."""
    sessions = set(db.session.scalars(
        select(SessionClient.session_id).join(UserSession, UserSession.public_sid == SessionClient.session_id)
        .where(SessionClient.client_id == client_id, UserSession.user_id == user_id, UserSession.revoked_at.is_(None))))
    sessions |= {session_id for family_client, session_id in user_live_families(user_id, stamp)
                 if family_client == client_id and session_id}
    return sorted(sessions)


def family_holder(family_id: str) -> tuple[str, int, str | None] | None:
    """(client_id, user_id, session_id) of a grant family, from its refresh tokens or its code."""
    for model in (RefreshToken, AuthorizationCode):
        row = db.session.execute(select(model.client_id, model.user_id, model.session_id)
                                 .where(model.family_id == family_id).limit(1)).first()
        if row is not None:
            return tuple(row)
    return None


def user_subject(user_id: int) -> str | None:
    return db.session.scalar(select(User.subject).where(User.id == user_id))


def enqueue(rows: list[dict]) -> None:
    """Queue deliveries in the caller's transaction (the logout, password change or revocation
    they report is committed with them, or neither is)."""
    if rows:
        db.session.execute(insert(LogoutDelivery), rows)


_CANDIDATE = (select(_DELIVERY.c.id)
              .where(*_OPEN, _DELIVERY.c.next_attempt_at <= bindparam("now"),
                     or_(_DELIVERY.c.leased_until.is_(None), _DELIVERY.c.leased_until < bindparam("now")),
                     _DELIVERY.c.client_id.not_in(bindparam("skip", expanding=True)))
              .order_by(_DELIVERY.c.next_attempt_at)
              .limit(1)
              .with_for_update(skip_locked=True))
_CLAIM = (update(_DELIVERY)
          # `=` a scalar subquery, run once (PostgreSQL's InitPlan); `IN (... LIMIT 1)` may be
          # re-run per row as a semi-join and take several rows in one claim
          .where(_DELIVERY.c.id == _CANDIDATE.scalar_subquery(), *_OPEN,
                 or_(_DELIVERY.c.leased_until.is_(None), _DELIVERY.c.leased_until < bindparam("now")))
          .values(leased_until=bindparam("until"), lease_owner=bindparam("owner"))
          .returning(_DELIVERY.c.id, _DELIVERY.c.jti, _DELIVERY.c.client_id, _DELIVERY.c.uri, _DELIVERY.c.subject,
                     _DELIVERY.c.session_id, _DELIVERY.c.attempts, _DELIVERY.c.created_at, _DELIVERY.c.issuer))


def claim_due(owner: str, now: int, until: int, skip_clients=()):
    """Take one due delivery for `owner` until `until` (committed), of a client not in
    `skip_clients`; None when none is due. The row: id, jti, client_id, uri, subject, session_id,
    attempts, created_at, issuer."""
    try:
        row = db.session.execute(_CLAIM, {"now": now, "until": until, "owner": owner,
                                          "skip": list(skip_clients)}).first()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return row


def settle(delivery_id: int, owner: str, values: dict) -> bool:
    """Record an attempt's outcome and release the lease, if `owner` still holds it (committed).
    False when the lease had run out and another worker took the row."""
    statement = (update(_DELIVERY)
                 .where(_DELIVERY.c.id == delivery_id, _DELIVERY.c.lease_owner == owner, *_OPEN)
                 .values(leased_until=None, lease_owner=None, **values))
    try:
        changed = db.session.execute(statement).rowcount
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return changed == 1


def give_up_client_deliveries(client_id: str, stamp: int, error: str) -> None:
    """End a client's deliveries not yet delivered nor given up, unsent (the caller commits): one
    in flight settles nothing (settle's update needs the row open)."""
    db.session.execute(update(_DELIVERY).where(_DELIVERY.c.client_id == client_id, *_OPEN)
                       .values(gave_up_at=stamp, last_error=error))


def next_due() -> int | None:
    """When the earliest open delivery is due (or None: nothing left to send)."""
    return db.session.scalar(select(func.min(_DELIVERY.c.next_attempt_at)).where(*_OPEN))


def finished_before(stamp_param: str):
    """The purge's condition: delivered or given up before the value bound as `stamp_param`."""
    return or_(_DELIVERY.c.delivered_at < bindparam(stamp_param), _DELIVERY.c.gave_up_at < bindparam(stamp_param))


ORPHANED_SESSION_CLIENT = ~exists().where(UserSession.public_sid == SessionClient.session_id)
