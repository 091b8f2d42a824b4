"""A user's browser sessions and app grants as rows, for the sessions and devices page.

Read only, in the session's transaction: what ends a session or a grant is
services/sessions.end_session and services/grants.revoke_family, through their stores.
"""

from sqlalchemy import or_, select

from ..extensions import db
from ..models import AuthorizationCode, Client, RefreshToken, UserSession
from . import refresh_families


def unrevoked_sessions(user_id: int, *, limit: int | None = None, public_sid: str | None = None,
                       bounds: tuple[int, int] = (0, 0)):
    """The user's unrevoked sessions, most recently used first (at most `limit`; only the one of
    `public_sid` if given): public_sid, client_id, created_at, last_seen_at, user_agent,
    ip_address. `bounds` (last seen at or after, created at or after) leaves out the sessions past
    their lifetime before the limit (the rule is the service's: browser_sessions.lifetime_bounds),
    so that ended sessions seen lately do not take the places of live ones seen before them."""
    seen_since, created_since = bounds
    query = (select(UserSession.public_sid, UserSession.client_id, UserSession.created_at, UserSession.last_seen_at,
                    UserSession.user_agent, UserSession.ip_address)
             .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None),
                    UserSession.last_seen_at >= seen_since, UserSession.created_at >= created_since)
             .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()).limit(limit))
    if public_sid is not None:
        query = query.where(UserSession.public_sid == public_sid)
    return db.session.execute(query).all()


# when a family's first token still kept was issued: one entry of (family_id, issued_at)
_FIRST = RefreshToken.__table__.alias("first")
_FIRST_ISSUED = (select(_FIRST.c.issued_at).where(_FIRST.c.family_id == RefreshToken.family_id)
                 .order_by(_FIRST.c.issued_at).limit(1).scalar_subquery())


def live_refresh_tokens(user_id: int, stamp: int, *, limit: int | None = None, family_id: str | None = None):
    """The user's unused, unrevoked, unexpired refresh tokens issued under her current password
    version (one a family: refresh_families.LIVE), the newest first (at
    most `limit`; only those of `family_id` if given): family_id,
    client_id, issued_at, user_agent, ip_address, expires_at, auth_time (whether the family
    has ended is the service's rule), and started_at: when the family's first token still kept
    was issued. Two index entries a family are read (refresh_families) and one for its start, in
    (family_id, issued_at): the rotated tokens of the user's grants are never visited."""
    query = (select(RefreshToken.family_id, RefreshToken.client_id, RefreshToken.issued_at, RefreshToken.user_agent,
                    RefreshToken.ip_address, RefreshToken.expires_at, RefreshToken.auth_time,
                    _FIRST_ISSUED.label("started_at"))
             .where(*refresh_families.LIVE, RefreshToken.expires_at >= stamp)
             .order_by(RefreshToken.issued_at.desc(), RefreshToken.id.desc()).limit(limit))
    if family_id is not None:
        query = query.where(RefreshToken.family_id == family_id)
    return db.session.execute(query, refresh_families.params(user_id)).all()


def unrevoked_families(user_id: int, stamp: int):
    """family_id and client_id of each of the user's families whose newest token is unused,
    unrevoked and unexpired (refresh_families.UNREVOKED), whatever password version it was issued
    under: those live_refresh_tokens lists and those the refresh grant refuses by their version."""
    return db.session.execute(select(RefreshToken.family_id, RefreshToken.client_id)
                              .where(*refresh_families.UNREVOKED, RefreshToken.expires_at >= stamp),
                              refresh_families.params(user_id)).all()


def session_sid_digest(user_id: int, public_sid: str) -> str | None:
    """The cookie sid's digest (browser_sessions.sid_digest) of the user's unrevoked session with
    this public id; None if there is none."""
    return db.session.scalar(select(UserSession.sid).where(
        UserSession.user_id == user_id, UserSession.public_sid == public_sid, UserSession.revoked_at.is_(None)))


def access_token_family(user_id: int, client_id: str | None, jti: str) -> str | None:
    """The family in which the user's access token `jti` was issued: with a refresh token, on a
    code's redemption, or with a code in the front channel; None for a token of no family."""
    if client_id is None:
        return None
    # by the jti alone, through its indexes (the planner would otherwise take the user's index, and
    # read every token the user's grants rotated and every code kept for a day); the owner is checked here
    for issued in (select(RefreshToken.family_id, RefreshToken.user_id, RefreshToken.client_id)
                   .where(RefreshToken.access_token_jti == jti),
                   select(AuthorizationCode.family_id, AuthorizationCode.user_id, AuthorizationCode.client_id)
                   .where(or_(AuthorizationCode.issued_jti == jti, AuthorizationCode.front_channel_jti == jti))):
        family = next((row.family_id for row in db.session.execute(issued)
                       if (row.user_id, row.client_id) == (user_id, client_id)), None)
        if family is not None:
            return family
    return None


def client_names(client_ids) -> dict[str, tuple[str, int]]:
    """client_id -> (display name, registered at), for the registered ones among these."""
    client_ids = [c for c in set(client_ids) if c]
    if not client_ids:
        return {}
    return {client_id: (name, created_at) for client_id, name, created_at in db.session.execute(
        select(Client.client_id, Client.client_name, Client.created_at).where(Client.client_id.in_(client_ids)))}
