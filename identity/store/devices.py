"""A user's browser sessions and app grants as rows, for the sessions and devices page.

Read only, in the session's transaction: what ends a session or a grant is
services/sessions.end_session and services/grants.revoke_family, through their stores.
"""

from sqlalchemy import func, or_, select

from ..extensions import db
from ..models import AuthorizationCode, Client, RefreshToken, UserSession


def unrevoked_sessions(user_id: int, *, limit: int | None = None, public_sid: str | None = None):
    """The user's unrevoked sessions, most recently used first (at most `limit`; only the one of
    `public_sid` if given): public_sid, client_id, created_at, last_seen_at, user_agent,
    ip_address (whether each is still within its lifetime is the service's rule)."""
    query = (select(UserSession.public_sid, UserSession.client_id, UserSession.created_at, UserSession.last_seen_at,
                    UserSession.user_agent, UserSession.ip_address)
             .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
             .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()).limit(limit))
    if public_sid is not None:
        query = query.where(UserSession.public_sid == public_sid)
    return db.session.execute(query).all()


def live_refresh_tokens(user_id: int, stamp: int, *, limit: int | None = None, family_id: str | None = None):
    """The user's unused, unrevoked, unexpired refresh tokens (one a family), the newest first (at
    most `limit`; only those of `family_id` if given): family_id,
    client_id, issued_at, user_agent, ip_address, expires_at, auth_time (whether the family
    has ended is the service's rule). Read through ix_refresh_tokens_live_user (user_id,
    issued_at), whose condition these terms repeat: the rotated tokens of the user's grants are
    never visited, and the newest `limit` are read without sorting the rest."""
    query = (select(RefreshToken.family_id, RefreshToken.client_id, RefreshToken.issued_at, RefreshToken.user_agent,
                    RefreshToken.ip_address, RefreshToken.expires_at, RefreshToken.auth_time)
             .where(RefreshToken.user_id == user_id, RefreshToken.consumed_at.is_(None),
                    RefreshToken.revoked_at.is_(None), RefreshToken.expires_at >= stamp)
             .order_by(RefreshToken.issued_at.desc(), RefreshToken.id.desc()).limit(limit))
    if family_id is not None:
        query = query.where(RefreshToken.family_id == family_id)
    return db.session.execute(query).all()


def families_started(user_id: int, family_ids) -> dict[str, int]:
    """When each family's first refresh token still kept was issued: one lookup a family in
    (family_id, issued_at), not a visit of each token it has rotated (one a refresh)."""
    family_ids = list(family_ids)
    if not family_ids:
        return {}
    return dict(db.session.execute(
        select(_LIVE.c.family_id, _FIRST_ISSUED)
        .where(_LIVE.c.user_id == user_id, _LIVE.c.consumed_at.is_(None), _LIVE.c.revoked_at.is_(None),
               _LIVE.c.family_id.in_(family_ids))
        .distinct()
    ).all())


_LIVE = RefreshToken.__table__.alias("live")
_FIRST_ISSUED = (select(func.min(RefreshToken.issued_at)).where(RefreshToken.family_id == _LIVE.c.family_id)
                 .scalar_subquery())


def session_cookie_sid(user_id: int, public_sid: str) -> str | None:
    """The cookie sid of the user's unrevoked session with this public id; None if there is none."""
    return db.session.scalar(select(UserSession.sid).where(
        UserSession.user_id == user_id, UserSession.public_sid == public_sid, UserSession.revoked_at.is_(None)))


def access_token_family(user_id: int, client_id: str | None, jti: str) -> str | None:
    """The family in which the user's access token `jti` was issued: with a refresh token, on a
    code's redemption, or with a code in the front channel; None for a token of no family."""
    if client_id is None:
        return None
    family = db.session.scalar(select(RefreshToken.family_id).where(
        RefreshToken.user_id == user_id, RefreshToken.client_id == client_id,
        RefreshToken.access_token_jti == jti).limit(1))
    if family is None:
        # by the jti alone, through its two partial indexes (the planner would otherwise take the
        # user's index, and read every code of the user kept for a day); the owner is checked here
        family = next((row.family_id for row in db.session.execute(
            select(AuthorizationCode.family_id, AuthorizationCode.user_id, AuthorizationCode.client_id).where(
                or_(AuthorizationCode.issued_jti == jti, AuthorizationCode.front_channel_jti == jti)))
            if (row.user_id, row.client_id) == (user_id, client_id)), None)
    return family


def client_names(client_ids) -> dict[str, str]:
    """client_id -> display name, for the registered ones among these."""
    client_ids = [c for c in set(client_ids) if c]
    if not client_ids:
        return {}
    return dict(db.session.execute(select(Client.client_id, Client.client_name)
                                   .where(Client.client_id.in_(client_ids))).all())
