"""Helpers for tests/test_native_review.py: a native app registered with every redirect URI kind
RFC 8252 names, and its code + PKCE requests."""

import json
import re
from urllib.parse import urlencode

from actions import pkce_pair

NATIVE = {
    "client_id": "native-app", "client_name": "Native App", "allowed_grant_types": ["authorization_code"],
    "redirect_uris": ["com.example.app:/cb", "http://127.0.0.1/cb", "http://[::1]/cb", "https://app.example.com/cb",
                      "com.example.app:///cb", "myapp://", "msauth.com.Contoso.MyApp://auth"],
    "post_logout_redirect_uris": ["com.example.app:/bye", "myapp://"],
    "allowed_scopes": ["openid", "profile", "offline_access", "IdentityServerApi"], "allow_offline_access": True,
    "require_consent": False,
}
SEED = {"api_scopes": [], "clients": [NATIVE], "users": []}

#: CSP 3 host-source: scheme://host[:port] where host is `*`, `*.name` or a DNS name (no IP-v6
#: literal: a browser ignores such a source, with a console error)
_HOST_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*://(\*|(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*)(:([0-9]+|\*))?", re.I)
_SCHEME_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)


def apply(app, seed=SEED) -> None:
    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(json.dumps(seed)))


def authorize_query(redirect_uri: str, scope="openid offline_access IdentityServerApi", **extra) -> tuple[str, str]:
    """(the /connect/authorize URL, the code_verifier) of the app's code + PKCE request."""
    verifier, challenge = pkce_pair()
    params = {"client_id": NATIVE["client_id"], "response_type": "code", "scope": scope, "redirect_uri": redirect_uri,
              "state": "app-state", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return "/connect/authorize?" + urlencode({k: v for k, v in params.items() if v is not None}), verifier


def directive(policy: str, name: str) -> list[str]:
    for part in policy.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    return []


def invalid_sources(sources: list[str]) -> list[str]:
    """The sources a browser ignores as invalid (keywords in quotes are valid)."""
    return [s for s in sources if not (s.startswith("'") or _HOST_SOURCE.fullmatch(s) or _SCHEME_SOURCE.fullmatch(s))]
