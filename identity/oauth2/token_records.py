"""Tokens as the revocation and introspection endpoints see them."""

from flask import current_app

from ..clock import now
from ..constants import PROFILE
from ..services import issued_grants, tokens
from ..services.accounts import get_user
from ..services.clients import cached_client
from ..services.mfa import misses_required_factor
from ..services.tokens import InvalidToken
from .client import OAuthClient


class AccessTokenRecord:
    def __init__(self, claims: dict):
        self.claims = claims
        self.client_id = claims.get("client_id")

    def check_client(self, client) -> bool:
        return client.client_id == self.client_id

    def is_expired(self) -> bool:
        """Outside its time window by this server's clock, which introspection answers inactive
        (RFC 7662 section 2.2). verify_access_token allows JWT_LEEWAY_SECONDS past `exp` and before
        `nbf` (skew between clocks), so it lets such a token through to here."""
        stamp, nbf = now(), self.claims.get("nbf")
        return stamp >= self.claims["exp"] or (nbf is not None and nbf > stamp)

    def _live_user(self):
        """The token's user while the token is live (one query, asked once per request)."""
        if not hasattr(self, "_user"):
            self._user = tokens.token_user(self.claims)
        return self._user

    def is_revoked(self) -> bool:
        if tokens.has_user(self.claims):
            return self._live_user() is None  # token_user also consults the revocation list
        return tokens.is_revoked(self.claims["jti"])

    def revoke(self) -> None:
        user = self._live_user() if tokens.has_user(self.claims) else None  # before the jti joins the list
        issued_grants.revoke_access_token(self.claims["jti"], self.claims["exp"], user_id=user.id if user else None,
                                   client_id=self.client_id)

    def introspection(self) -> dict:
        fields = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "auth_time", "sid", "amr", "acr")
        payload = {k: self.claims[k] for k in fields if k in self.claims}
        payload.update(active=True, token_type="Bearer")
        # the user name is a claim of the profile scope, as in userinfo: a token of the user's
        # identifier alone does not tell its client who they are by name
        if tokens.has_user(self.claims) and PROFILE in str(self.claims.get("scope", "")).split():
            user = self._live_user()
            payload["username"] = user.username if user else None
        return payload


class RefreshTokenRecord:
    def __init__(self, row):
        self.row = row
        self.client_id = row.client_id

    def check_client(self, client) -> bool:
        return client.client_id == self.client_id

    def is_expired(self) -> bool:
        return not issued_grants.refresh_token_usable(self.row.expires_at, self.row.auth_time, now(), self.row.issued_at)

    def _user(self):
        """The token's user (one query, asked once per request)."""
        if not hasattr(self, "_row_user"):
            self._row_user = get_user(self.row.user_id)
        return self._row_user

    def is_revoked(self) -> bool:
        """Revoked, rotated, or refused by the refresh grant now: its user disabled (a rotation in
        flight as they were disabled stores an unrevoked one) or her password changed since its
        issue (one stored as the change ran is not revoked), its client no longer offered refresh
        tokens (allow_offline_access off, or the grant off), or requiring a second factor this
        sign-in did not use, or a verified address the user has not. Inactive, as the grant would
        answer it (RFC 7662)."""
        if self.row.revoked_at is not None or self.row.consumed_at is not None:
            return True
        user = self._user()
        if user is None or not user.enabled:
            return True
        if not issued_grants.issued_under_current_password(self.row.password_version, user.password_version):
            return True  # issued before a password change it raced (the grant refuses it too)
        client = cached_client(self.client_id)
        if client is None or not OAuthClient(client).offers_refresh_tokens:
            return True
        if client.require_verified_email and not user.email_verified:
            return True
        return misses_required_factor(client, self.row.amr)

    def revoke(self) -> None:
        issued_grants.revoke_refresh_token(self.row)

    def introspection(self) -> dict:
        user = self._user()
        return {
            "active": True, "token_type": "refresh_token", "scope": self.row.scope, "client_id": self.client_id,
            "sub": user.subject if user else None, "iat": self.row.issued_at,
            # when the refresh grant stops taking it (refresh_token_ends_at), not the expiry stored at its issue
            "exp": issued_grants.refresh_token_ends_at(self.row.expires_at, self.row.auth_time, self.row.issued_at),
        }


def find_token(value: str, hint: str | None):
    """Look a token up as an access token (JWT), then as a refresh token (by hash); None if
    unknown. The hint does not narrow the search: a server that does not find the token under
    the hinted type MUST search the others (RFC 7009 section 2.1, RFC 7662 section 2.1), and a
    JWT that does not verify may still be some other kind of token."""
    if not isinstance(value, str) or not value or len(value) > current_app.config["JWT_MAX_LENGTH"]:
        return None  # longer than any token this server takes (a refresh token is 43 characters)
    if value.count(".") == 2:
        try:
            return AccessTokenRecord(tokens.verify_access_token(value))
        except InvalidToken:
            pass
    row = issued_grants.find_refresh_token(value)
    return RefreshTokenRecord(row) if row is not None else None
