"""Discovery and JWKS, built from the same settings that switch features on, served with ETags."""

import hashlib
import json
import threading
import time

from flask import Blueprint, Response, current_app, request

from ..constants import OFFLINE_ACCESS, PROMPT_VALUES, RESPONSE_TYPES_BY_GRANT, STANDARD_IDENTITY_RESOURCES
from ..config.issuer import issuer
from ..oauth2 import authorization_server
from ..services import keys
from ..services.mfa import ACR_MFA, ACR_ONE_FACTOR
from ..services.resources import api_scope_names

bp = Blueprint("discovery", __name__)

ENDPOINTS = {
    "authorization_endpoint": "/connect/authorize",
    "token_endpoint": "/connect/token",
    "userinfo_endpoint": "/connect/userinfo",
    "end_session_endpoint": "/connect/endsession",
    "revocation_endpoint": "/connect/revocation",
    "introspection_endpoint": "/connect/introspect",
    "jwks_uri": "/.well-known/openid-configuration/jwks",
}
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
#: documents kept per issuer; without FLASK_ISSUER the Host header picks the issuer, so bound it
MAX_CACHED_ISSUERS = 32


def grant_types_supported(enabled: list[str]) -> list[str]:
    grants = []
    if {"authorization_code", "hybrid"} & set(enabled):
        grants.append("authorization_code")
    grants += [g for g in ("implicit", "refresh_token", "client_credentials", "password") if g in enabled]
    return grants


def response_types_supported(enabled: list[str]) -> list[str]:
    types = []
    for grant, response_types in RESPONSE_TYPES_BY_GRANT.items():
        if grant in enabled:
            types += sorted(response_types)
    return types


def response_modes_supported(enabled: list[str]) -> list[str]:
    """`query` only for `response_type=code`: a response with a token or an ID token is refused it
    (OAuth 2.0 Multiple Response Type Encoding Practices, section 5; oauth2/response_modes.py)."""
    return (["query"] if "authorization_code" in enabled else []) + ["fragment", "form_post"]


def scopes_supported(enabled: list[str]) -> list[str]:
    scopes = set(STANDARD_IDENTITY_RESOURCES) | api_scope_names()
    if "refresh_token" not in enabled:
        scopes.discard(OFFLINE_ACCESS)
    return sorted(scopes)


ACR_VALUES = [ACR_ONE_FACTOR, ACR_MFA]  # docs/mfa.md; acr_values=mfa asks for a second factor


def claims_supported() -> list[str]:
    claims = {"iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "c_hash", "sid", "amr", "acr"}
    for _, resource_claims in STANDARD_IDENTITY_RESOURCES.values():
        claims.update(resource_claims)
    return sorted(claims)


def build_document(base: str) -> dict:
    """The OpenID Provider Metadata for this issuer."""
    cfg = current_app.config
    enabled = cfg["GRANT_TYPES_ENABLED"]
    doc = {"issuer": base}
    doc.update({name: base + path for name, path in ENDPOINTS.items()})
    doc.update(
        {
            "scopes_supported": scopes_supported(enabled),
            "claims_supported": claims_supported(),
            "response_types_supported": response_types_supported(enabled),
            "response_modes_supported": response_modes_supported(enabled),
            "grant_types_supported": grant_types_supported(enabled),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [cfg["ID_TOKEN_SIGNING_ALG"]],  # RS256 (config/checks.py)
            "token_endpoint_auth_methods_supported": authorization_server().token_endpoint_auth_methods(),
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,  # RFC 9207 (oauth2/authorize.py)
            "prompt_values_supported": list(PROMPT_VALUES),
            "acr_values_supported": ACR_VALUES,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            # OpenID Connect Front-Channel and Back-Channel Logout 1.0 (services/logout.py)
            "frontchannel_logout_supported": True,
            "frontchannel_logout_session_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }
    )
    return doc


def cached_document(app, base: str) -> tuple[bytes, str] | None:
    """The document for `base` and its ETag as this worker last built them, if within
    DISCOVERY_DOCUMENT_CACHE_SECONDS; else None. Needs no app context: for the WSGI layer that
    serves it without Flask (fast_documents.py), which leaves a None to the view."""
    hit = app.extensions.get("identity_discovery", {}).get(base)
    if hit is None or time.monotonic() - hit[2] >= app.config["DISCOVERY_DOCUMENT_CACHE_SECONDS"]:
        return None
    return hit[0], hit[1]


def _cached_document(base: str) -> tuple[bytes, str]:
    hit = cached_document(current_app, base)
    if hit is not None:
        return hit
    cache = current_app.extensions.setdefault("identity_discovery", {})
    # noted before the build's reads: a document read before a change (a scope added) committed is
    # dropped within the period of the commit, and does not replace one another thread built since
    stamp = time.monotonic()
    body = json.dumps(build_document(base), separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    with _FILL:
        stored = cache.get(base)
        if stored is None or stored[2] < stamp:
            if len(cache) >= MAX_CACHED_ISSUERS:
                cache.clear()
            cache[base] = (body, etag, stamp)
    return body, etag


_FILL = threading.Lock()  # _cached_document: a document compared with the stored one's time, then stored


def cache_control(host_derived: bool, max_age: int) -> str:
    """Shared caches may keep a document only if it is the same for every Host: a discovery
    document whose issuer came from the request's Host (no ISSUER configured) is never stored."""
    return "no-store" if host_derived else f"public, max-age={max_age}"


def _respond(body: bytes, etag: str, *, host_derived: bool = False) -> Response:
    cache = cache_control(host_derived, current_app.config["DISCOVERY_CACHE_SECONDS"])
    if request.if_none_match.contains_weak(etag):  # If-None-Match compares weakly (RFC 9110, 13.1.2)
        response = Response(status=304)
    else:
        response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache
    response.vary.add("Origin")  # a CORS request gets its own copy, with Access-Control-Allow-Origin
    return response


@bp.get("/.well-known/openid-configuration")
def openid_configuration():
    """Serve the discovery document."""
    return _respond(*_cached_document(issuer()), host_derived=not current_app.config.get("ISSUER"))


@bp.get("/.well-known/openid-configuration/jwks")
def jwks():
    """Serve the public signing keys."""
    return _respond(*keys.jwks())
