"""Helpers for tests/test_protocol_review.py: a 2-worker gunicorn server seeded with a password-grant
client that may also use client credentials, and reads of its database."""

import json

import requests
from sqlalchemy import create_engine, text

from servers import run_together, seeded_server, token_request

PASSWORD = "tulip-quartz-harbor-917"
SECRET = "twice-secret-0123456789"
SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "clients": [{"client_id": "twice", "client_name": "Twice client", "client_secrets": [SECRET],
                 "allowed_grant_types": ["password", "client_credentials"], "allow_offline_access": True,
                 "allowed_scopes": ["openid", "offline_access", "IdentityServerApi"]}],
    "users": [{"username": "alice", "email": "alice@example.com", "password": PASSWORD, "name": "Alice"}],
}


def scalar(uri: str, sql: str, **params):
    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def audited(uri: str, event: str) -> int:
    return scalar(uri, "SELECT count(*) FROM audit_events WHERE event = :event", event=event)


def password_tokens(server, scope: str = "openid offline_access IdentityServerApi", password: str = PASSWORD) -> dict:
    response = token_request(server.url, "twice", SECRET, grant_type="password", username="alice",
                             password=password, scope=scope)
    assert response.status_code == 200, response.text
    return response.json()


def twice(call, together: bool = True) -> list:
    answers = run_together(call, call) if together else [call(), call()]
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


RP_REDIRECT = "http://127.0.0.1:9/callback"
RP_SIGNED_OUT = "http://127.0.0.1:9/signed-out"
RP_FRONTCHANNEL = "http://127.0.0.1:9/frontchannel-logout"
RP_BACKCHANNEL = "http://127.0.0.1:9/backchannel-logout"
RP_CLIENT = {"client_id": "rp", "client_name": "Relying Party", "allowed_grant_types": ["authorization_code"],
             "redirect_uris": [RP_REDIRECT], "post_logout_redirect_uris": [RP_SIGNED_OUT], "require_pkce": True,
             "frontchannel_logout_uri": RP_FRONTCHANNEL, "backchannel_logout_uri": RP_BACKCHANNEL,
             "allowed_scopes": ["openid"]}
FRONTCHANNEL_SEED = {**SEED, "clients": [*SEED["clients"], RP_CLIENT]}

ASKING_CLIENT = {"client_id": "asks", "client_name": "Asking Client", "allowed_grant_types": ["authorization_code"],
                 "redirect_uris": [RP_REDIRECT], "require_pkce": True, "require_consent": True,
                 "allowed_scopes": ["openid", "profile", "email"]}
CONSENT_SEED = {**SEED, "clients": [*SEED["clients"], ASKING_CLIENT]}
