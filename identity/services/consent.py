"""Consent: what a user has allowed a client, remembered, listed and revoked."""

from dataclasses import dataclass

from sqlalchemy import delete, func, select

from ..clock import now
from ..extensions import db
from ..models import Client, Consent, RefreshToken
from ..store.writes import insert_or_skip
from . import audit
from .issued_grants import revoke_user_client_grants
from .resources import display_names


def has_consent(user_id: int, client_id: str, scopes: list[str]) -> bool:
    """True when the user has remembered consent covering every requested scope."""
    row = db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
    return row is not None and set(scopes) <= set(row.scopes)


def remember_consent(user_id: int, client_id: str, scopes: list[str]) -> None:
    """Add the scopes to what the user allowed the client, remembered in one row per user and
    client even when two requests remember at once (Allow clicked twice): the row is inserted
    unless there already, then read locked and widened, so neither request's scopes are lost."""
    db.session.execute(insert_or_skip(Consent.__table__, ("user_id", "client_id"),
                                      ("user_id", "client_id", "scopes", "created_at")),
                       {"user_id": user_id, "client_id": client_id, "scopes": sorted(set(scopes)), "created_at": now()})
    row = db.session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
                            .with_for_update().execution_options(populate_existing=True))
    widened = sorted(set(row.scopes) | set(scopes))
    if widened != row.scopes:
        row.scopes = widened
    audit.record("consent_granted", user_id=user_id, client_id=client_id, detail={"scopes": sorted(scopes)})
    db.session.commit()


@dataclass
class AppGrant:
    client_id: str
    client_name: str
    scopes: list[tuple[str, str]]
    created_at: int


def list_grants(user_id: int) -> list[AppGrant]:
    """Apps the user has consented to or that hold live refresh tokens for them."""
    consents = {c.client_id: c for c in db.session.scalars(select(Consent).where(Consent.user_id == user_id))}
    tokens = db.session.execute(
        select(RefreshToken.client_id, func.min(RefreshToken.issued_at))
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None), RefreshToken.consumed_at.is_(None),
               RefreshToken.expires_at > now())
        .group_by(RefreshToken.client_id)
    ).all()
    client_ids = set(consents) | {t[0] for t in tokens}
    names = {c.client_id: c.client_name for c in db.session.scalars(select(Client).where(Client.client_id.in_(client_ids)))}
    token_scopes = {}
    for row in db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None),
                                                            RefreshToken.consumed_at.is_(None))):
        token_scopes.setdefault(row.client_id, set()).update(row.scope.split())
    issued = dict(tokens)
    grants = []
    for client_id in sorted(client_ids):
        scopes = set(consents[client_id].scopes) if client_id in consents else set()
        scopes |= token_scopes.get(client_id, set())
        created = consents[client_id].created_at if client_id in consents else issued.get(client_id, 0)
        grants.append(AppGrant(client_id, names.get(client_id, client_id), display_names(sorted(scopes)), created))
    return grants


def revoke_grant(user_id: int, client_id: str) -> None:
    """Forget the consent and revoke the refresh tokens a user gave one client."""
    db.session.execute(delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id))
    revoke_user_client_grants(user_id, client_id)
    audit.record("consent_revoked", user_id=user_id, client_id=client_id)
    db.session.commit()
