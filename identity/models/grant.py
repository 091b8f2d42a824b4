from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS, GROWING_ID


class AuthorizationCode(db.Model):
    """A code issued at the authorization endpoint, kept as a tombstone after use to catch replays."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the code
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(64))  # the session's public_sid
    redirect_uri: Mapped[str] = mapped_column(Text)
    response_type: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[int] = mapped_column(EPOCH_SECONDS)
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    expires_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)
    consumed_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    family_id: Mapped[str] = mapped_column(String(64), index=True)  # shared by every token this code leads to
    issued_jti: Mapped[str | None] = mapped_column(String(64))  # access token issued on redemption
    front_channel_jti: Mapped[str | None] = mapped_column(String(64))  # hybrid: the token sent with the code
    # when the latest access token the code led to (front channel, redemption) expires: the grants
    # page's "may still be live", whatever the client's lifetime is now (None: stored before it was kept)
    access_expires_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    amr: Mapped[str | None] = mapped_column(String(64))  # the session's sign-in methods (space-separated)
    # the user's password version the code was minted under: it redeems only while the user has it
    # (None: stored before it was kept)
    password_version: Mapped[int | None] = mapped_column(Integer)

    # the nonce-replay check (store/issued_grants.py, code_nonce_seen): a lookup, not a scan of the
    # last AUTHORIZATION_CODE_LIFETIME_SECONDS of codes
    # the family an access token was issued in, by its jti (store/devices.py, access_token_family):
    # a lookup, not a scan of the user's codes of the last day; only redeemed (and hybrid) codes
    # have one, so a code's INSERT adds no entry
    __table_args__ = (
        Index("ix_authorization_codes_client_nonce", "client_id", "nonce"),
        # and two partial indexes on the jti columns (partial_indexes.py)
    )


class RefreshToken(db.Model):
    """A refresh token handle (stored as a hash); rotated on use, revoked by family on reuse."""

    __tablename__ = "refresh_tokens"
    # A rotated token is kept until it expires (its reuse revokes the family), a row a refresh: what
    # is read per request must not visit them. A user's families are found through (user_id,
    # family_id) and each family's newest (its live) token and first token through (family_id,
    # issued_at) (store/refresh_families.py); the family an access token was issued in by its jti.
    # No index names consumed_at or revoked_at: a rotation's UPDATE stays heap-only on PostgreSQL.
    __table_args__ = (
        Index("ix_refresh_tokens_user_client", "user_id", "client_id"),
        Index("ix_refresh_tokens_user_family", "user_id", "family_id"),
        Index("ix_refresh_tokens_family_issued", "family_id", "issued_at"),
        Index("ix_refresh_tokens_access_token_jti", "access_token_jti"),
    )

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(64))  # the session's public_sid
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    amr: Mapped[str | None] = mapped_column(String(64))  # the sign-in methods of the code it came from
    access_token_jti: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    expires_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)  # the purge looks for expired ones
    consumed_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)  # set when rotated
    revoked_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    # the app's user agent (bounded) and address (truncated) when this token was issued, for the sessions page
    user_agent: Mapped[str | None] = mapped_column(String(200))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    # the user's password version its access token was issued under: it rotates only while the user
    # has it (None: stored before it was kept)
    password_version: Mapped[int | None] = mapped_column(Integer)


class RevokedAccessToken(db.Model):
    """A JWT access token revoked before its expiry (RFC 7009, replay, family revocation)."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)


class StandaloneAccessToken(db.Model):
    """An access token issued to a user outside any code or refresh-token family (the implicit
    flow, the password grant without a refresh token), kept by jti until it expires so that
    revoking the app on the grants page can revoke it."""

    __tablename__ = "standalone_access_tokens"
    __table_args__ = (Index("ix_standalone_access_tokens_user_client", "user_id", "client_id"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)
    issued_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)  # None: recorded before it was kept
    # the user's password version it was issued under (its `pwv`; None: recorded before it was kept)
    password_version: Mapped[int | None] = mapped_column(Integer)
