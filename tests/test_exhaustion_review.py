"""What one caller's requests may cost the server: Argon2 verifications, rows, mail. Each test
measures in counts (hashes run, rows written) and asserts a bound, never a time."""

import base64

import pytest
from argon2 import PasswordHasher

from actions import OAuthActions
from conftest import CHEAP_ARGON2

LIMITED = {**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
           "RATELIMIT_SENSITIVE": "3 per minute", "RATELIMIT_DEFAULT": "1000 per minute"}


@pytest.fixture
def argon2_verifications(monkeypatch):
    """How many Argon2 verifications ran (the real ones: each call is passed on)."""
    calls = []
    real = PasswordHasher.verify

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    return calls


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


# --- client authentication: every failure costs an Argon2 verification --------------------------


@pytest.mark.parametrize("app_config", [LIMITED])
def test_failed_client_authentications_are_held_to_the_sign_in_limit(client, seeded, argon2_verifications):
    """A wrong or unknown client's secret costs one Argon2 verification (security.md), as a wrong
    password does; without the sign-in limit one address could have 1,000 a minute verified at
    each of the token, revocation and introspection endpoints (3,000 a minute, 30 times the sign-in
    form's 100). Failures at the three count together toward RATELIMIT_SENSITIVE."""
    attempts = [
        ("/connect/token", {"grant_type": "client_credentials", "scope": "IdentityServerApi"}, "nobody"),
        ("/connect/revocation", {"token": "x"}, "service"),
        ("/connect/introspect", {"token": "x"}, "service"),
    ]
    statuses = []
    for _ in range(4):
        for path, data, client_id in attempts:
            statuses.append(client.post(path, data=data, headers=basic(client_id, "wrong-secret")).status_code)
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}, statuses
    assert len(argon2_verifications) <= 3


@pytest.mark.parametrize("app_config", [LIMITED])
def test_clients_that_authenticate_are_not_held_to_the_sign_in_limit(client, seeded):
    """Only failures count: a client that authenticates uses the token endpoint as often as the
    general limit allows, also after an address's failures (below the limit)."""
    oauth = OAuthActions(client)
    assert client.post("/connect/token", data={"grant_type": "client_credentials"},
                       headers=basic("service", "wrong-secret")).status_code == 401
    statuses = [oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").status_code
                for _ in range(6)]
    assert statuses == [200] * 6
