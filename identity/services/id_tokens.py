"""ID tokens (OpenID Connect Core 2, 3.1.3.6, 3.3.2.11) and the claims each scope releases."""

import base64
import hashlib

from flask import current_app

from ..clock import now
from ..config.issuer import issuer
from ..models import User
from .mfa import sign_in_claims
from .tokens import sign

_HASHES = {"RS256": hashlib.sha256, "ES256": hashlib.sha256}


def half_hash(value: str, alg: str) -> str:
    """at_hash / c_hash: base64url of the left half of the hash of the ASCII value."""
    digest = _HASHES[alg](value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def user_claims(user: User, scopes: list[str] | str) -> dict:
    """The claims about the user that these scopes release (userinfo and ID tokens)."""
    scopes = scopes.split() if isinstance(scopes, str) else scopes
    claims = {"sub": user.subject}
    if "profile" in scopes:
        claims["preferred_username"] = user.username
        if user.name:
            claims["name"] = user.name
    claims.update(email_claims(user, scopes))
    return claims


def email_claims(user: User, scopes: list[str] | str) -> dict:
    """`email` and `email_verified`, if the scopes hold `email` and the user has an address."""
    scopes = scopes.split() if isinstance(scopes, str) else scopes
    if "email" in scopes and user.email:
        return {"email": user.email, "email_verified": bool(user.email_verified)}
    return {}


def build_id_token(*, client_id: str, user: User, auth_time: int, nonce: str | None = None, sid: str | None = None,
                   access_token: str | None = None, code: str | None = None, scope: str = "",
                   amr: str | None = None) -> str:
    """Sign an ID token for a client. With no access token (response_type=id_token) it carries the
    claims of `scope`; with one, only the email claims (the public contract names email_verified
    in ID tokens), the others go to userinfo. The front channel's hybrid ID tokens pass no scope."""
    alg = current_app.config["ID_TOKEN_SIGNING_ALG"]
    stamp = now()
    claims = {
        "iss": issuer(),
        "sub": user.subject,
        "aud": client_id,
        "iat": stamp,
        "exp": stamp + current_app.config["ID_TOKEN_LIFETIME_SECONDS"],
        "auth_time": auth_time,
        **sign_in_claims(amr),
    }
    if nonce:
        claims["nonce"] = nonce
    if sid:
        claims["sid"] = sid
    if access_token:
        claims["at_hash"] = half_hash(access_token, alg)
    if code:
        claims["c_hash"] = half_hash(code, alg)
    if not access_token:  # response_type=id_token: no userinfo call possible (Core 5.4)
        claims.update(user_claims(user, scope))
    else:
        claims.update(email_claims(user, scope))
    return sign(claims, alg)
