"""Consent: what a user has allowed a client, remembered, listed and revoked."""

from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, null, or_, select

from ..clock import now
from ..errors import NotFound
from ..extensions import db
from ..models import AuthorizationCode, Client, Consent, RefreshToken, RevokedAccessToken, StandaloneAccessToken, User
from ..store import accounts as user_rows
from ..store import refresh_families
from ..store.writes import insert_or_skip
from . import audit
from .bearer_cache import CLOCK_DIFFERENCE_ALLOWED_SECONDS
from .issued_grants import revoke_user_client_grants, usable_refresh_tokens
from .resources import display_names, scope_display_names


def has_consent(user_id: int, client_id: str, scopes: list[str]) -> bool:
    """True when the user has remembered consent covering every requested scope."""
    row = db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
    return row is not None and set(scopes) <= set(row.scopes)


def remember_consent(user_id: int, client_id: str, scopes: list[str]) -> None:
    """Add the scopes to what the user allowed the client, remembered in one row per user and
    client even when two requests remember at once (Allow clicked twice): the row is inserted
    unless there already, then read locked and widened, so neither request's scopes are lost.
    Audited (`consent_granted`) when it remembers something new: not again for scopes remembered
    already, such as by the same form sent twice at once, whose other request inserted the row."""
    inserted, row = _consent_row_locked(user_id, client_id, scopes)
    while row is None:  # revoked (the connected apps page) between the insert and the read: anew
        inserted, row = _consent_row_locked(user_id, client_id, scopes)
    remembers_more = inserted or not set(scopes) <= set(row.scopes)
    widened = sorted(set(row.scopes) | set(scopes))
    if widened != row.scopes:
        row.scopes = widened
    if remembers_more:
        audit.record("consent_granted", user_id=user_id, client_id=client_id, detail={"scopes": sorted(scopes)})
    db.session.commit()


def _consent_row_locked(user_id: int, client_id: str, scopes: list[str]) -> tuple[bool, Consent | None]:
    """The user's consent row for the client, inserted with `scopes` unless there, then read locked
    until the commit: whether this inserted it, and the row (None if deleted between the two
    statements: on PostgreSQL the insert that found it there left it unlocked)."""
    inserted = db.session.execute(
        insert_or_skip(Consent.__table__, ("user_id", "client_id"), ("user_id", "client_id", "scopes", "created_at"))
        .execution_options(preserve_rowcount=True),
        {"user_id": user_id, "client_id": client_id, "scopes": sorted(set(scopes)), "created_at": now()}).rowcount == 1
    row = db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
                            .with_for_update().execution_options(populate_existing=True))
    return inserted, row


@dataclass
class AppGrant:
    client_id: str
    client_name: str
    scopes: list[tuple[str, str]]
    created_at: int


def _not_revoked(jti_column):
    return and_(jti_column.is_not(None), ~exists().where(RevokedAccessToken.jti == jti_column))


def _under_current_password(version_column, issued, version: int | None, since: int):
    """The bearer check's rule (tokens.token_user) on a row of access tokens: issued under the
    user's password version `version` and no earlier than its change at `since` (less the clocks'
    allowance); a row that kept no version (NULL), issued since the change."""
    return or_(and_(version_column.is_(None), issued >= since),
               and_(version_column == version, issued >= since - CLOCK_DIFFERENCE_ALLOWED_SECONDS))


def _apps_holding_access_tokens(user_id: int) -> dict[str, tuple[int, set[str]]]:
    """Apps that may hold a live access token of the user outside any refresh token (a code flow
    without offline_access, the implicit flow, the password grant): client id -> (first issued,
    scopes). Not those revoked, expired (by the expiry stored with the code; for a code stored
    before that was kept, by the client's lifetime now), or refused already by the bearer check
    (tokens.token_user), which wants the user's current password version and an issue time no
    earlier than the password's change (less CLOCK_DIFFERENCE_ALLOWED_SECONDS).

    A code's access tokens carry the version the code was minted under (it redeems only while the
    user has it), a standalone token's the one recorded with it, so both are judged by the version
    as the bearer check judges: `users disable` and `sessions end USER` move it on without changing
    the password. A row stored before it kept its version (NULL) is judged by the time of the last
    password change alone: the closest rule it allows (it expires within a token's lifetime)."""
    stamp = now()
    since, version = db.session.execute(select(User.password_changed_at, User.password_version)
                                        .where(User.id == user_id)).one_or_none() or (0, None)
    since = since or 0
    issued = func.coalesce(AuthorizationCode.consumed_at, AuthorizationCode.created_at)
    apps: dict[str, tuple[int, set[str]]] = {}
    from_codes = db.session.execute(  # one row an app and scope, not one a code
        select(AuthorizationCode.client_id, func.min(issued), AuthorizationCode.scope)
        .join(Client, Client.client_id == AuthorizationCode.client_id)
        .where(AuthorizationCode.user_id == user_id,
               _under_current_password(AuthorizationCode.password_version, issued, version, since),
               func.coalesce(AuthorizationCode.access_expires_at, issued + Client.access_token_lifetime) > stamp,
               or_(_not_revoked(AuthorizationCode.issued_jti), _not_revoked(AuthorizationCode.front_channel_jti)))
        .group_by(AuthorizationCode.client_id, AuthorizationCode.scope))
    standalone_issued = func.coalesce(StandaloneAccessToken.issued_at,
                                      StandaloneAccessToken.expires_at - Client.access_token_lifetime)
    standalone = db.session.execute(
        select(StandaloneAccessToken.client_id, func.min(standalone_issued), null())
        .join(Client, Client.client_id == StandaloneAccessToken.client_id)
        .where(StandaloneAccessToken.user_id == user_id, StandaloneAccessToken.expires_at > stamp,
               _under_current_password(StandaloneAccessToken.password_version, standalone_issued, version, since),
               _not_revoked(StandaloneAccessToken.jti))
        .group_by(StandaloneAccessToken.client_id))
    for client_id, at, scope in [*from_codes, *standalone]:
        first, scopes = apps.get(client_id, (at, set()))
        apps[client_id] = (min(first, at), scopes | set((scope or "").split()))
    return apps


def list_grants(user_id: int) -> list[AppGrant]:
    """Apps the user has consented to, that hold live refresh tokens for them (refresh_families.LIVE:
    not one issued under a password version the user no longer has, which the refresh grant
    refuses), or that may hold a live access token of theirs (revoking any of them ends it:
    revoke_grant)."""
    consents = {c.client_id: c for c in db.session.scalars(select(Consent).where(Consent.user_id == user_id))}
    stamp = now()
    # one row an app (and scope), never one a grant: a user can start grants at the token
    # endpoint's rate, and each lives for weeks
    live, user = refresh_families.LIVE, refresh_families.params(user_id)  # one a family: never its rotated tokens
    tokens: dict[str, int] = dict(db.session.execute(  # client id -> first issued, of the usable refresh tokens
        select(RefreshToken.client_id, func.min(RefreshToken.issued_at))
        .where(*live, usable_refresh_tokens(stamp))  # the refresh grant's rule, at its last second too
        .group_by(RefreshToken.client_id), user).all())
    access_only = _apps_holding_access_tokens(user_id)
    client_ids = set(consents) | set(tokens) | set(access_only)
    names = {c.client_id: c.client_name for c in db.session.scalars(select(Client).where(Client.client_id.in_(client_ids)))}
    token_scopes = {client_id: scopes for client_id, (_, scopes) in access_only.items()}
    for client_id, scope in db.session.execute(select(RefreshToken.client_id, RefreshToken.scope).where(*live).distinct(), user):
        token_scopes.setdefault(client_id, set()).update(scope.split())
    issued = {client_id: first for client_id, (first, _) in access_only.items()}
    for client_id, first in tokens.items():
        issued[client_id] = min(first, issued.get(client_id, first))
    grants = []
    shown = scope_display_names()  # once, not once an app: a user may have granted thousands
    for client_id in sorted(client_ids):
        scopes = set(consents[client_id].scopes) if client_id in consents else set()
        scopes |= token_scopes.get(client_id, set())
        created = consents[client_id].created_at if client_id in consents else issued.get(client_id, 0)
        grants.append(AppGrant(client_id, names.get(client_id, client_id), display_names(sorted(scopes), shown), created))
    return grants


def revoke_grant(user_id: int, client_id: str) -> None:
    """Forget the consent and revoke the refresh tokens a user gave one client. NotFound when the
    page would not list the app (list_grants): it holds nothing of the user's, the form was sent
    again or names an app the user never used, so nothing is revoked, audited, or told (a second
    logout token, or a user's `sub` sent to an app that never knew them).

    The user's row is taken first, as `users remove` (whose cascade reaches the codes before the
    consents) and a password change take it: at the same instant they queue, where each waited for
    rows the other held. Judged under it: a user removed meanwhile has no app to revoke."""
    user_rows.lock_user_row(user_id)
    if not any(grant.client_id == client_id for grant in list_grants(user_id)):
        db.session.rollback()
        raise NotFound("no access to revoke")
    db.session.execute(delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
    revoke_user_client_grants(user_id, client_id)
    audit.record("consent_revoked", user_id=user_id, client_id=client_id)
    db.session.commit()
