"""JWT access tokens (RFC 9068) and ID tokens: issue with the current key, verify strictly.

Verification uses an explicit algorithm allow-list, a concrete key looked up by `kid`, and
a size cap before parsing; it never trusts the token to say how it should be checked.
"""

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError

from ..clock import now
from ..constants import LOCAL_API_SCOPE
from ..current import current_application
from ..config.issuer import issuer
from ..models import Client, User
from ..store import tokens as store
from ..store.tokens import LiveUser
from . import bearer_cache, keys
from .mfa import sign_in_claims
from .clients import cached_client

ALLOWED_ALGS = ("RS256", "ES256")
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")


class InvalidToken(Exception):
    """The token is malformed, unsigned by us, expired, or otherwise unusable."""


@dataclass
class IssuedToken:
    token: str
    jti: str
    expires_in: int
    claims: dict


IDENTITY_SCOPES = ("openid", "profile", "email", "offline_access")


def own_resources() -> str:
    """The audience of the issuer's own resources (userinfo), as IdentityServer names it."""
    return issuer() + "/resources"


def audiences(scope: str) -> list[str]:
    """The resources a token is for: its API scopes, and the issuer's own resources (userinfo)
    when it carries openid or no API scope at all."""
    names = scope.split()
    api = [s for s in names if s == LOCAL_API_SCOPE or s not in IDENTITY_SCOPES]
    return api + [own_resources()] if "openid" in names or not api else api


def audience_of_scope(scope: str) -> str:
    """The `aud` a token must carry to be used for `scope`: an API scope is its own audience,
    an identity scope (openid at userinfo) the issuer's own resources."""
    return own_resources() if scope in IDENTITY_SCOPES else scope


def check_audience(claims: dict, scopes) -> None:
    """RFC 9068 section 4: the token names the resource it is presented to in `aud` (a string or
    a list): for each required scope, its audience; with no scope required, one of ours."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        held = {aud}
    elif isinstance(aud, list):
        held = {a for a in aud if isinstance(a, str)}
    else:
        held = set()
    if scopes:
        if all(audience_of_scope(s) in held for s in scopes):
            return
    elif held & {own_resources(), LOCAL_API_SCOPE}:
        return
    raise InvalidToken("the access token is not for this resource (aud)")


_ES256 = ec.ECDSA(hashes.SHA256())
_HEADERS: dict[tuple[str, str, str], str] = {}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(claims: dict, alg: str, typ: str = "JWT") -> str:
    """A compact JWS of `claims` with the current key for `alg` (RS256 or ES256).

    Written out with `cryptography` directly: the protected header is encoded once per key,
    and an ES256 signature is the raw 64-byte R || S of RFC 7518 §3.4. Tokens are verified with
    joserfc, which holds every token this makes to the standard.
    """
    key = keys.signing_key(alg)
    header = _HEADERS.get((alg, typ, key.kid))
    if header is None:
        header = _HEADERS[(alg, typ, key.kid)] = _b64(
            json.dumps({"alg": alg, "typ": typ, "kid": key.kid}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    data = signing_input.encode("ascii")
    if alg == "ES256":
        r, s = decode_dss_signature(key.private_key.sign(data, _ES256))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "RS256":
        signature = key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    return f"{signing_input}.{_b64(signature)}"


def issue_access_token(client: Client, user: User | None, scope: str, *, auth_time: int | None = None,
                       sid: str | None = None, amr: str | None = None) -> IssuedToken:
    """Issue an RFC 9068 access token. Its `sub` is the user's, or for a token that acts for no
    user (client_credentials) the client's id (RFC 9068 section 2.2); how the user signed in
    (auth_time, amr, acr) and their password version (`pwv`) only when there is a user."""
    stamp = now()
    lifetime = client.access_token_lifetime
    claims = {
        "iss": issuer(),
        "aud": audiences(scope),
        "client_id": client.client_id,
        "scope": scope,
        "iat": stamp,
        "nbf": stamp,
        "exp": stamp + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    if user is None:
        claims["sub"] = client.client_id
    else:
        claims["sub"] = user.subject
        claims["auth_time"] = auth_time or stamp
        claims["pwv"] = user.password_version
        claims.update(sign_in_claims(amr))
        if sid:
            claims["sid"] = sid
    token = sign(claims, current_application().config["ACCESS_TOKEN_SIGNING_ALG"], typ="at+jwt")
    return IssuedToken(token, claims["jti"], lifetime, claims)


def _decode(token: str, *, typ: tuple[str, ...] | None, key_for=keys.verification_key) -> tuple[dict, str]:
    """The claims of a token signed by one of our published keys (or those `key_for` finds), and
    that key's kid."""
    if not isinstance(token, str) or len(token) > current_application().config["JWT_MAX_LENGTH"] or token.count(".") != 2:
        raise InvalidToken("malformed token")
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError) as err:
        raise InvalidToken("malformed token") from err
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALLOWED_ALGS:
        raise InvalidToken("algorithm not allowed")
    if typ is not None and str(header.get("typ", "")).lower() not in typ:
        raise InvalidToken("wrong token type")
    key = key_for(kid) if isinstance(kid, str) else None
    if key is None or (key.alg and key.alg != alg):
        raise InvalidToken("unknown signing key")
    try:
        return jwt.decode(token, key, algorithms=[alg]).claims, kid
    except (JoseError, ValueError) as err:
        raise InvalidToken("bad signature") from err


def check_time_claims(claims: dict) -> None:
    leeway, stamp = current_application().config["JWT_LEEWAY_SECONDS"], now()
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not isinstance(exp, int) or exp + leeway < stamp:
        raise InvalidToken("token expired")
    if nbf is not None and (not isinstance(nbf, int) or nbf - leeway > stamp):
        raise InvalidToken("token not yet valid")
    if iat is not None and (not isinstance(iat, int) or iat - leeway > stamp):
        raise InvalidToken("token issued in the future")


_VERIFIED_CACHE_SIZE = 10_000


def forget_verified_tokens() -> None:
    """Forget the tokens this worker has verified; the key service calls it when a key leaves
    (or joins) the published set, so no token is accepted on the strength of a key now gone."""
    current_app.extensions.pop("identity_verified_tokens", None)


def verify_access_token(token: str) -> dict:
    """Return the claims of an access token we issued and that has not expired (signature, typ, iss, time).

    A worker remembers the tokens whose signature it has checked (the same string cannot carry
    other claims), so a client's repeated calls skip the signature math; that the signing key is
    still published (the worker's key ring, re-read every SIGNING_KEY_RELOAD_SECONDS), time,
    issuer and that the client is still registered and enabled (the worker's client snapshot)
    are checked on every call, revocation by the caller.
    """
    verified = current_application().extensions.setdefault("identity_verified_tokens", {})
    remembered = verified.get(token)
    if remembered is None:
        claims, kid = _decode(token, typ=ACCESS_TOKEN_TYPES)
        if not isinstance(claims.get("scope"), str) or not isinstance(claims.get("jti"), str):
            raise InvalidToken("missing claims")
        if len(verified) >= _VERIFIED_CACHE_SIZE:
            verified.clear()
        verified[token] = claims, kid
    else:
        claims, kid = remembered
        if not keys.is_published(kid):  # revoked by `keys rotate --now` (or expired) since
            raise InvalidToken("unknown signing key")
    if claims.get("iss") != issuer():
        raise InvalidToken("wrong issuer")
    check_time_claims(claims)
    client = cached_client(claims.get("client_id"))
    if client is None or not client.enabled:
        # removed or disabled: refused everywhere within CLIENT_CACHE_SECONDS (the snapshot's life)
        raise InvalidToken("the token's client is no longer registered")
    if not isinstance(claims.get("iat"), int) or claims["iat"] < client.created_at:
        # issued to an earlier client of this id, removed since: a new registration starts afresh
        raise InvalidToken("the token's client is no longer registered")
    return claims


ID_TOKEN_TYPES = ("", "jwt")  # ours say JWT; the others we sign (at+jwt, logout+jwt) are not ID tokens


def verify_id_token_hint(token: str) -> dict:
    """Check an id_token_hint: an ID token (not an access token, at+jwt, nor a back-channel logout
    token, logout+jwt, which is signed with the same key), signed by us, of our issuer, for a
    registered client, issued since its registration; expiry is not required (RP-Initiated Logout 1.0 section 2 lets a client
    send an expired one), nor that its key is still published, only not revoked
    (keys.hint_verification_key)."""
    claims, _ = _decode(token, typ=ID_TOKEN_TYPES, key_for=keys.hint_verification_key)  # length first, then typ
    if claims.get("iss") != issuer():
        raise InvalidToken("wrong issuer")
    aud = claims.get("aud")
    client_id = aud[0] if isinstance(aud, list) and len(aud) == 1 else aud
    client = cached_client(client_id) if isinstance(client_id, str) else None
    if client is None or "scope" in claims or "client_id" in claims:
        raise InvalidToken("the token's audience is not a registered client")
    if not isinstance(claims.get("iat"), int) or claims["iat"] < client.created_at:
        # issued to an earlier client of this id, removed since (as verify_access_token refuses)
        raise InvalidToken("the token's audience is not a registered client")
    return claims


def has_user(claims: dict) -> bool:
    """True for an access token issued for a user: only those carry the password version (a
    client's own token has the client's id as its `sub`, so `sub` does not tell them apart)."""
    return "pwv" in claims


def token_user(claims: dict) -> "LiveUser | None":
    """Return the live user of a verified access token: not revoked, not older than the password
    (its password version, and issued no earlier than the password's change, allowing for
    instances' clocks CLOCK_DIFFERENCE_ALLOWED_SECONDS apart).

    One prepared statement on the process's autocommit read connection for the columns a
    bearer request reads (a read-only tuple, not an ORM object: this is the local API's hot
    path), provided the jti is not on the revocation list. A token the worker has seen before
    may be answered from its memory instead, for BEARER_CACHE_SECONDS (bearer_cache.py).
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not has_user(claims):
        return None
    row = bearer_cache.live_row(sub, claims["jti"], store.live_token_user)
    if row is None:
        return None
    user = LiveUser._make(row)
    if claims.get("pwv") != user.password_version:
        return None
    if claims["iat"] < user.password_changed_at - bearer_cache.CLOCK_DIFFERENCE_ALLOWED_SECONDS:
        # issued before the password change that began this version: a database restored from a
        # backup counts versions from the backup's again, and the change repeated after it gives
        # out a version that tokens issued since the backup (under another password) carry
        return None
    return user


def is_revoked(jti: str) -> bool:
    return store.is_revoked(jti)


def revoke_jtis(jtis, expires_at: int, user_id: int | None) -> None:
    """Put access tokens (by jti) on the revocation list, once each (the caller commits). Nothing
    waits: other workers may accept them for up to BEARER_CACHE_SECONDS more (bearer_cache.py)."""
    if not jtis:
        return
    bearer_cache.forget(jtis)
    store.add_revoked(jtis, expires_at)


def revoke_access_token(jti: str, expires_at: int, user_id: int | None) -> bool:
    """Put one access token on the revocation list (the caller commits); whether this call put it
    there, rather than finding it listed (by a request that committed first: the same revocation
    sent twice at once)."""
    bearer_cache.forget([jti])
    return store.add_revoked_one(jti, expires_at)


def token_hash(value: str) -> str:
    """The SHA-256 handle by which a code or refresh token is stored and looked up."""
    return hashlib.sha256(value.encode()).hexdigest()
