"""Persisted grants: authorization codes (single use, tombstoned) and refresh tokens (rotated, by family).

Codes and refresh tokens are stored as SHA-256 handles. Consuming either is one conditional
UPDATE (`... WHERE consumed_at IS NULL`), so of two simultaneous redemptions exactly one wins;
the loser is treated as a replay and the whole family it belongs to is revoked.
"""

import secrets
from collections import namedtuple

from flask import current_app
from sqlalchemy import bindparam, insert, select, text, update

from ..store.connection import autocommit_connection
from ..clock import now
from ..constants import ACCESS_TOKEN_LIFETIME_MAX
from ..extensions import db
from ..models import AuthorizationCode, RefreshToken, StandaloneAccessToken, User
from . import audit
from .sessions import session_is_live
from .tokens import revoke_jtis, token_hash
from ..store.writes import write, write_if


def new_family_id() -> str:
    return secrets.token_urlsafe(16)


# The sign-in's hot path, built once: the authorization endpoint writes a code, the token endpoint
# reads it with its user and then consumes it with the tokens it produced, as statements on the
# autocommit connection (no pool checkout, no ORM). On PostgreSQL the writes go through the
# session instead (see writes.py): the autocommit connection commits there without waiting for
# the WAL flush, which config.py allows for rotations only.
_CODE_FIELDS = ("code_hash", "client_id", "user_id", "session_id", "redirect_uri", "response_type", "scope", "nonce",
                "code_challenge", "code_challenge_method", "auth_time", "created_at", "expires_at", "family_id",
                "front_channel_jti")
_INSERT_CODE = insert(AuthorizationCode).values({name: bindparam(name) for name in _CODE_FIELDS})
_CODE_GRANT = (
    select(AuthorizationCode.id, AuthorizationCode.client_id, AuthorizationCode.user_id, AuthorizationCode.session_id,
           AuthorizationCode.redirect_uri, AuthorizationCode.scope, AuthorizationCode.nonce,
           AuthorizationCode.code_challenge, AuthorizationCode.code_challenge_method, AuthorizationCode.auth_time,
           AuthorizationCode.expires_at, AuthorizationCode.consumed_at, AuthorizationCode.family_id,
           AuthorizationCode.issued_jti, User.subject, User.password_version)
    .join(User, User.id == AuthorizationCode.user_id)
    .where(AuthorizationCode.code_hash == bindparam("code_hash"))
)
CodeGrant = namedtuple("CodeGrant", [column.key for column in _CODE_GRANT.selected_columns])
_CODES = AuthorizationCode.__table__
# Unexpired as well as unused: a password change ends a user's codes by expiring them, and a
# redemption that raced it loses here (or commits first, and the change revokes what it issued).
_CONSUME_CODE = (
    update(_CODES)
    .where(_CODES.c.id == bindparam("code_id"), _CODES.c.consumed_at.is_(None), _CODES.c.expires_at >= bindparam("stamp"))
    .values(consumed_at=bindparam("stamp"), issued_jti=bindparam("jti"))
)
_BURN_CODE = (
    update(_CODES)
    .where(_CODES.c.id == bindparam("code_id"), _CODES.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("stamp"))
)


def save_authorization_code(code: str, *, client_id: str, user_id: int, session_id: str | None, redirect_uri: str,
                            response_type: str, scope: str, nonce: str | None, code_challenge: str | None,
                            code_challenge_method: str | None, auth_time: int,
                            front_channel_jti: str | None = None) -> None:
    """Store a new code; `front_channel_jti` is the access token a hybrid response sent with it."""
    stamp = now()
    params = {
        "code_hash": token_hash(code), "client_id": client_id, "user_id": user_id, "session_id": session_id,
        "redirect_uri": redirect_uri, "response_type": response_type, "scope": scope, "nonce": nonce,
        "code_challenge": code_challenge, "code_challenge_method": code_challenge_method, "auth_time": auth_time,
        "created_at": stamp, "expires_at": stamp + current_app.config["AUTHORIZATION_CODE_LIFETIME_SECONDS"],
        "family_id": new_family_id(), "front_channel_jti": front_channel_jti,
    }
    write((_INSERT_CODE, params))


def find_authorization_code(code: str, client_id: str) -> CodeGrant | None:
    """Return a code this client may redeem, with its user (read only); None if unknown, another
    client's, expired, already used, or minted by a browser session that has ended.

    A second use revokes what the first use issued (RFC 6749 section 4.1.2). A code offered by
    another client, or whose session has ended, is burnt: any later attempt is a replay.
    """
    found = autocommit_connection().first(_CODE_GRANT, {"code_hash": token_hash(code)})
    if found is None:
        return None
    row = CodeGrant._make(found)
    if row.consumed_at is not None:
        revoke_family(row.family_id, reason="authorization_code_replayed", user_id=row.user_id,
                      client_id=row.client_id)
        return None
    if row.expires_at < now():
        return None
    if row.client_id != client_id or not session_is_live(row.session_id):
        burn_authorization_code(row.id)
        return None
    return row


def burn_authorization_code(code_id: int) -> None:
    """Consume a code without issuing anything: a failed redemption attempt ends it (RFC 9700
    section 2.1.1), so a guessed PKCE verifier or redirect URI gets no second try."""
    write((_BURN_CODE, {"code_id": code_id, "stamp": now()}))


def end_user_codes(user_id: int) -> None:
    """Expire every unused code of a user (a password change: codes minted before it must not
    redeem); the caller commits."""
    stamp = now()
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.user_id == user_id, AuthorizationCode.consumed_at.is_(None),
               AuthorizationCode.expires_at >= stamp)
        .values(expires_at=stamp - 1)
    )


def user_of_grant(grant: "CodeGrant | RefreshGrant") -> "TokenUser":
    """The user a code or refresh token was read with, as issuing an access token reads it."""
    return TokenUser(grant.user_id, grant.subject, grant.password_version)


def _successor_params(grant, token: str | None, *, scope: str, access_token_jti: str | None, stamp: int) -> dict:
    """The values of _INSERT_SUCCESSOR: a new refresh token in the family of `grant` (a code or
    the refresh token it replaces), issued with the access token `access_token_jti`."""
    return {
        "new_hash": token_hash(token) if token else None, "family_id": grant.family_id,
        "client_id": grant.client_id, "user_id": grant.user_id, "session_id": grant.session_id, "scope": scope,
        "auth_time": grant.auth_time, "jti": access_token_jti, "stamp": stamp,
        "expires_at": stamp + current_app.config["REFRESH_TOKEN_LIFETIME_SECONDS"],
    }


def redeem_authorization_code(row: CodeGrant, refresh_token: str | None, *, scope: str,
                              access_token_jti: str | None) -> bool:
    """Consume a code, recording the access token it produced, and store the first refresh token of
    its family, once: True for the one request that wins.

    Called after the tokens are signed, so the write is short: one BEGIN IMMEDIATE transaction on
    SQLite (as a rotation), the session's transaction on PostgreSQL (which commits synchronously).
    The loser revokes what the winner issued.
    """
    stamp = now()
    # separate parameter sets: the session would add any key named like a column to the UPDATE
    consume = {"code_id": row.id, "stamp": stamp, "jti": access_token_jti}
    store = _successor_params(row, refresh_token, scope=scope, access_token_jti=access_token_jti, stamp=stamp)
    won = write_if((_CONSUME_CODE, consume), (_INSERT_SUCCESSOR, store) if refresh_token else None)
    if not won:
        revoke_family(row.family_id, reason="authorization_code_replayed", user_id=row.user_id, client_id=row.client_id)
    return won


def code_nonce_seen(client_id: str, nonce: str) -> bool:
    """True when a live code of this client already carries this nonce (a replayed request)."""
    stmt = select(AuthorizationCode.id).where(
        AuthorizationCode.client_id == client_id, AuthorizationCode.nonce == nonce, AuthorizationCode.expires_at > now()
    )
    return db.session.scalar(stmt.limit(1)) is not None


def save_refresh_token(token: str, *, family_id: str, client_id: str, user_id: int, session_id: str | None,
                       scope: str, auth_time: int | None, access_token_jti: str | None) -> RefreshToken:
    stamp = now()
    row = RefreshToken(
        token_hash=token_hash(token), family_id=family_id, client_id=client_id, user_id=user_id,
        session_id=session_id, scope=scope, auth_time=auth_time, access_token_jti=access_token_jti,
        issued_at=stamp, expires_at=stamp + current_app.config["REFRESH_TOKEN_LIFETIME_SECONDS"],
    )
    db.session.add(row)
    return row


def find_refresh_token(token: str) -> RefreshToken | None:
    return db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash(token)))


# The hot path of a rotation: one read (the token and the user its access token is for), then
# one write that consumes it and stores its successor, both on the autocommit connection.
_REFRESH_GRANT = (
    select(RefreshToken.id, RefreshToken.family_id, RefreshToken.client_id, RefreshToken.user_id,
           RefreshToken.session_id, RefreshToken.scope, RefreshToken.auth_time, RefreshToken.expires_at,
           RefreshToken.consumed_at, RefreshToken.revoked_at, User.subject, User.password_version)
    .join(User, User.id == RefreshToken.user_id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)
RefreshGrant = namedtuple("RefreshGrant", [column.key for column in _REFRESH_GRANT.selected_columns])
TokenUser = namedtuple("TokenUser", "id subject password_version")  # what issuing an access token reads

_CONSUME = (
    update(RefreshToken)
    .where(RefreshToken.id == bindparam("rid"), RefreshToken.consumed_at.is_(None), RefreshToken.revoked_at.is_(None))
    .values(consumed_at=bindparam("stamp"))
)
_CONSUME_RETURNING = _CONSUME.returning(RefreshToken.id)
_INSERT_SUCCESSOR = insert(RefreshToken).values(
    token_hash=bindparam("new_hash"), family_id=bindparam("family_id"), client_id=bindparam("client_id"),
    user_id=bindparam("user_id"), session_id=bindparam("session_id"), scope=bindparam("scope"),
    auth_time=bindparam("auth_time"), access_token_jti=bindparam("jti"), issued_at=bindparam("stamp"),
    expires_at=bindparam("expires_at"),
)
# PostgreSQL: both in one statement (one round trip, one transaction); the successor is stored
# only if this statement consumed the old token.
_ROTATE_POSTGRESQL = text("""
    WITH consumed AS (
        UPDATE refresh_tokens SET consumed_at = :stamp
        WHERE id = :rid AND consumed_at IS NULL AND revoked_at IS NULL
        RETURNING family_id
    )
    INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, session_id, scope, auth_time,
                                access_token_jti, issued_at, expires_at)
    SELECT CAST(:new_hash AS VARCHAR), family_id, CAST(:client_id AS VARCHAR), CAST(:user_id AS INTEGER),
           CAST(:session_id AS VARCHAR), CAST(:scope AS TEXT), CAST(:auth_time AS INTEGER),
           CAST(:jti AS VARCHAR), CAST(:stamp AS INTEGER), CAST(:expires_at AS INTEGER)
    FROM consumed
    RETURNING id
""")


def usable_refresh_token(token: str, client_id: str) -> RefreshGrant | None:
    """Find a refresh token this client may rotate (read only); reuse of a rotated one revokes its family."""
    found = autocommit_connection().first(_REFRESH_GRANT, {"token_hash": token_hash(token)})
    if found is None:
        return None
    row = RefreshGrant._make(found)
    if row.client_id != client_id or row.revoked_at is not None or row.expires_at < now():
        return None
    if row.consumed_at is not None:
        revoke_family(row.family_id, reason="refresh_token_reused", user_id=row.user_id, client_id=row.client_id)
        return None
    return row


def rotate_refresh_token(row: RefreshGrant, successor: str | None, *, scope: str, access_token_jti: str | None) -> bool:
    """Consume a refresh token and store its successor, once: True for the one request that wins.

    Called after the new tokens are signed, so the write is short: one statement on PostgreSQL,
    one BEGIN IMMEDIATE transaction on SQLite. The loser's family (the winner's new token
    included) is revoked.
    """
    params = _successor_params(row, successor, scope=scope, access_token_jti=access_token_jti, stamp=now())
    params["rid"] = row.id
    connection = autocommit_connection()
    if connection.is_sqlite:
        won = write_if((_CONSUME, params), (_INSERT_SUCCESSOR, params) if successor else None)
    elif successor:
        won = connection.write_first(_ROTATE_POSTGRESQL, params) is not None
    else:
        won = connection.write_first(_CONSUME_RETURNING, params) is not None
    if not won:
        revoke_family(row.family_id, reason="refresh_token_reused", user_id=row.user_id, client_id=row.client_id)
    return won


def family_access_token_jtis(family_ids) -> set[str]:
    """Every access token issued in these families: at the front channel with the code (hybrid),
    when the code was redeemed, and with each refresh token."""
    family_ids = list(family_ids)
    if not family_ids:
        return set()
    jtis = set(db.session.scalars(select(RefreshToken.access_token_jti).where(RefreshToken.family_id.in_(family_ids))))
    for issued, front in db.session.execute(select(AuthorizationCode.issued_jti, AuthorizationCode.front_channel_jti)
                                            .where(AuthorizationCode.family_id.in_(family_ids))):
        jtis.update((issued, front))
    jtis.discard(None)
    return jtis


def revoke_family(family_id: str, *, reason: str, user_id: int | None = None, client_id: str | None = None) -> None:
    """Revoke every refresh token of a family and every access token issued in it."""
    stamp = now()
    jtis = family_access_token_jtis([family_id])
    db.session.execute(
        update(RefreshToken).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None)).values(revoked_at=stamp)
    )
    revoke_jtis(jtis, stamp + ACCESS_TOKEN_LIFETIME_MAX, user_id)
    audit.record("token_revoked", user_id=user_id, client_id=client_id, detail={"reason": reason, "family": family_id})
    db.session.commit()


def revoke_refresh_token(row: RefreshToken) -> None:
    """RFC 7009: revoking a refresh token revokes its family (and their access tokens)."""
    revoke_family(row.family_id, reason="revocation_endpoint", user_id=row.user_id, client_id=row.client_id)


_INSERT_STANDALONE = insert(StandaloneAccessToken.__table__).values(
    jti=bindparam("jti"), user_id=bindparam("user_id"), client_id=bindparam("client_id"),
    expires_at=bindparam("expires_at"))


def record_standalone_access_token(jti: str, *, user_id: int, client_id: str, expires_in: int) -> None:
    """Record an access token of no family (implicit flow, password grant without a refresh
    token) until it expires, so revoking the app on the grants page can revoke it."""
    write((_INSERT_STANDALONE, {"jti": jti, "user_id": user_id, "client_id": client_id,
                                "expires_at": now() + int(expires_in)}))


def revoke_user_client_grants(user_id: int, client_id: str) -> None:
    """Revoke every refresh token a user granted to a client, every access token issued to the
    client for the user (in those families, by the user's codes, or standalone), and the
    client's unused codes (the caller commits)."""
    stamp = now()
    families = set(db.session.scalars(select(RefreshToken.family_id).where(
        RefreshToken.user_id == user_id, RefreshToken.client_id == client_id)))
    families |= set(db.session.scalars(select(AuthorizationCode.family_id).where(
        AuthorizationCode.user_id == user_id, AuthorizationCode.client_id == client_id)))
    jtis = family_access_token_jtis(families)
    jtis |= set(db.session.scalars(select(StandaloneAccessToken.jti).where(
        StandaloneAccessToken.user_id == user_id, StandaloneAccessToken.client_id == client_id,
        StandaloneAccessToken.expires_at >= stamp)))
    revoke_jtis(jtis, stamp + ACCESS_TOKEN_LIFETIME_MAX, user_id)
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.client_id == client_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=stamp)
    )
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.user_id == user_id, AuthorizationCode.client_id == client_id,
               AuthorizationCode.consumed_at.is_(None))
        .values(consumed_at=stamp)
    )

