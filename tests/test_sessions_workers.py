"""Ending an app grant through the local API, against a real server with two gunicorn workers that
both remember the grant's access token (BEARER_CACHE_SECONDS): once that time has passed since the
DELETE answered, neither worker accepts the token, and its refresh token is refused.

Revocations are not waited out (services/bearer_cache.py): the worker that ends the grant refuses
its tokens at once, another worker within BEARER_CACHE_SECONDS.
"""

import time

import pytest
import requests

from servers import password_grant_seed, seeded_server, token_request

SECRET = "devices-secret-0123456789"
PASSWORD = "harbor-lantern-thistle-381"
SEED = password_grant_seed("devices", SECRET, "dana", PASSWORD, offline_access=True)
CACHE_SECONDS = 1
SCOPE = "openid IdentityServerApi offline_access"


@pytest.fixture
def server(tmp_path):
    env = {"FLASK_BEARER_CACHE_SECONDS": str(CACHE_SECONDS), "FLASK_ARGON2_TIME_COST": "1",
           "FLASK_ARGON2_MEMORY_COST_KIB": "8", "FLASK_RATELIMIT_ENABLED": "false"}
    with seeded_server(tmp_path, SEED, name="devices", env=env) as running:
        yield running


def grant(server) -> dict:
    response = token_request(server.url, "devices", SECRET, grant_type="password", username="dana",
                             password=PASSWORD, scope=SCOPE)
    assert response.status_code == 200, f"{response.text}\n{server.log()}"
    return response.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def statuses(server, token: str, count: int) -> list[int]:
    """`count` calls on new connections, so both workers take them."""
    return [requests.get(server.url + "/localapi/account", headers=bearer(token), timeout=30).status_code
            for _ in range(count)]


def refused_refresh(server, refresh_token: str) -> bool:
    response = token_request(server.url, "devices", SECRET, grant_type="refresh_token", refresh_token=refresh_token)
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.server
def test_no_worker_accepts_an_ended_grants_token(server):
    ended, kept = grant(server), grant(server)
    assert statuses(server, ended["access_token"], 40) == [200] * 40  # remembered in both workers
    listed = requests.get(server.url + "/localapi/sessions", headers=bearer(kept["access_token"]), timeout=30)
    assert listed.status_code == 200, listed.text
    [target] = [e for e in listed.json() if not e["current"]]

    response = requests.delete(f"{server.url}/localapi/sessions/{target['id']}", headers=bearer(kept["access_token"]),
                               timeout=30)
    assert response.status_code == 204, f"{response.text}\n{server.log()}"
    time.sleep(CACHE_SECONDS)

    assert statuses(server, ended["access_token"], 20) == [401] * 20
    assert refused_refresh(server, ended["refresh_token"])
    assert statuses(server, kept["access_token"], 4) == [200] * 4


@pytest.mark.server
def test_no_worker_accepts_the_others_once_all_but_the_callers_grant_are_ended(server):
    others, kept = [grant(server) for _ in range(3)], grant(server)
    for other in others:
        assert statuses(server, other["access_token"], 10) == [200] * 10

    response = requests.delete(server.url + "/localapi/sessions", headers=bearer(kept["access_token"]), timeout=30)
    assert response.status_code == 204, f"{response.text}\n{server.log()}"
    time.sleep(CACHE_SECONDS)

    for other in others:
        assert statuses(server, other["access_token"], 10) == [401] * 10
        assert refused_refresh(server, other["refresh_token"])
    listed = requests.get(server.url + "/localapi/sessions", headers=bearer(kept["access_token"]), timeout=30)
    assert [e["current"] for e in listed.json()] == [True]
