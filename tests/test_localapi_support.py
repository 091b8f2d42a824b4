"""Helpers for the local API tests (no tests here): token minting and forging, an `api` fixture.

Tokens are minted with the real service inside a request context on https://localhost, the
issuer that conftest's https test client sees; forged ones are signed with joserfc or by hand.
"""

import base64
import hashlib
import hmac
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select

from identity.constants import LOCAL_API_SCOPE
from identity.extensions import db
from identity.models import AuditEvent, RefreshToken, User
from identity.services import keys
from identity.services.clients import get_client
from identity.services.tokens import issue_access_token

BASE_URL = "https://localhost"
ISSUER = BASE_URL
ALICE_PASSWORD = "tulip-quartz-harbor-917"
NEW_PASSWORD = "lantern-orchid-velvet-204"
CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1}
USER_COLUMNS = ("subject", "username", "email", "name", "password_hash", "password_version",
                "password_changed_at", "failed_attempts", "locked_until", "created_at")


class LocalApi:
    """Action helpers: mint tokens and call the local API with them."""

    def __init__(self, app, client):
        self.app, self.client = app, client

    def token(self, scope: str = f"openid {LOCAL_API_SCOPE}", *, client_id: str = "mobile",
              username: str | None = "alice") -> str:
        with self.app.test_request_context(base_url=BASE_URL):
            user = db.session.scalar(select(User).where(User.username == username)) if username else None
            return issue_access_token(get_client(client_id), user, scope).token

    def forge(self, claims: dict | None = None, header: dict | None = None, key=None, alg: str | None = None) -> str:
        """Sign claims with `key` (default: our current key for `alg`), starting from a valid token.

        The kid is our current access-token key's unless `header` says otherwise; None removes a member.
        """
        default_alg = self.app.config["ACCESS_TOKEN_SIGNING_ALG"]
        alg = alg or default_alg
        with self.app.test_request_context(base_url=BASE_URL):
            key = key or keys.signing_key(alg)
            kid = keys.signing_key(default_alg).kid
            header = without_none({"alg": alg, "typ": "at+jwt", "kid": kid, **(header or {})})
            return jwt.encode(header, without_none({**self.claims(), **(claims or {})}), key, algorithms=[alg])

    def forge_raw(self, alg: str, secret: bytes | None, claims: dict | None = None) -> str:
        """Build a token by hand: `alg: none` (no secret) or an HMAC one, with our current kid."""
        with self.app.test_request_context(base_url=BASE_URL):
            kid = keys.signing_key(self.app.config["ACCESS_TOKEN_SIGNING_ALG"]).kid
        header = {"alg": alg, "typ": "at+jwt", "kid": kid}
        signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps({**self.claims(), **(claims or {})}).encode())
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
        return signing_input + "." + b64(signature)

    def kid(self, alg: str) -> str:
        """The kid of our current key for `alg`."""
        with self.app.test_request_context(base_url=BASE_URL):
            return keys.signing_key(alg).kid

    def public_pem(self) -> bytes:
        with self.app.test_request_context(base_url=BASE_URL):
            return keys.signing_key(self.app.config["ACCESS_TOKEN_SIGNING_ALG"]).as_pem(private=False)

    def claims(self) -> dict:
        now = int(time.time())
        with self.app.app_context():
            user = db.session.scalar(select(User).where(User.username == "alice"))
            return {"iss": ISSUER, "sub": user.subject, "aud": [LOCAL_API_SCOPE], "client_id": "mobile",
                    "scope": f"openid {LOCAL_API_SCOPE}", "iat": now, "nbf": now, "exp": now + 600,
                    "jti": f"forged-{now}", "auth_time": now, "pwv": user.password_version}

    def get_account(self, token: str | None, **kwargs):
        return self.client.get("/localapi/account", headers=bearer(token), **kwargs)

    def change_password(self, token: str | None, current: str = ALICE_PASSWORD, new: str = NEW_PASSWORD,
                        confirm: str | None = None, **kwargs):
        body = {"current_password": current, "new_password": new,
                "confirm_password": new if confirm is None else confirm}
        return self.client.post("/localapi/password", headers=bearer(token), json=body, **kwargs)

    def post_password(self, token: str | None, **kwargs):
        return self.client.post("/localapi/password", headers=bearer(token), **kwargs)

    def user_row(self, username: str = "alice") -> dict:
        with self.app.app_context():
            user = db.session.scalar(select(User).where(User.username == username))
            return {c: getattr(user, c) for c in USER_COLUMNS}

    def audit_events(self, event: str) -> list[AuditEvent]:
        with self.app.app_context():
            rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))
            db.session.expunge_all()
            return rows

    def refresh_tokens(self) -> list[RefreshToken]:
        with self.app.app_context():
            rows = list(db.session.scalars(select(RefreshToken).order_by(RefreshToken.id)))
            db.session.expunge_all()
            return rows


def without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def problem_of(response) -> dict:
    """The problem+json body of a response, checked for the RFC 9457 members."""
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    body = json.loads(response.get_data(as_text=True))
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == response.status_code
    return body


def other_keys():
    """Keys that are not ours: an RSA and an EC key of the right kinds."""
    return RSAKey.generate_key(2048, auto_kid=True), ECKey.generate_key("P-256", auto_kid=True)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def app_config():
    """Cheap Argon2 for these tests: the policy and the flow, not the hash cost, are under test."""
    return dict(CHEAP_ARGON2)


@pytest.fixture
def api(app, client, seeded) -> LocalApi:
    return LocalApi(app, client)
