"""Helpers for tests/test_clientauth_review.py: clients seeded as docs/cli.md says, and HTTP Basic
credentials written as RFC 6749 section 2.3.1 says (each part form-urlencoded before Base64)."""

import base64
import json
from urllib.parse import quote_plus

from identity.services.seed import apply_seed, load_seed

#: a secret with every character section 2.3.1's encoding is about: `:`, `%`, `+`, a space, non-ASCII
ODD_SECRET = "a:b%c+d e é/=&"
SECOND_SECRET = "second-secret-0123456789"
ENDPOINTS = {"/connect/token": {"grant_type": "client_credentials", "scope": "IdentityServerApi"},
             "/connect/revocation": {"token": "unknown-token"},
             "/connect/introspect": {"token": "unknown-token"}}
SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "users": [],
    "clients": [
        {"client_id": "svc", "client_name": "Service", "client_secrets": [ODD_SECRET, SECOND_SECRET],
         "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]},
        {"client_id": "other", "client_name": "Other", "client_secrets": ["other-secret-0123456789"],
         "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]},
        {"client_id": "pub", "client_name": "Public", "allowed_grant_types": ["authorization_code"],
         "redirect_uris": ["https://pub.example.com/cb"], "allowed_scopes": ["openid"]},
    ],
}


def seed(app, data=None) -> None:
    with app.app_context():
        apply_seed(load_seed(json.dumps(data or SEED)))


def basic(client_id: str, secret: str, *, encoded: bool = True) -> dict:
    """The Authorization header of client_secret_basic (section 2.3.1's encoding unless encoded=False)."""
    if encoded:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}
