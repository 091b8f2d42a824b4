"""No request a client can trigger at will may hold a sync worker idle (issue 15).

A client looping "refresh, then revoke the new access token" used to make every revocation sleep
out the bearer cache's lease (0.5 s) inside the request, so a few such clients kept every worker
asleep and `/healthz` took about a second. Here a real gunicorn server (2 sync workers) serves
client threads doing exactly that, bounded in count and time, on loopback, while a probe asks
`/healthz`; then the server's own count of such sleeps (`identity_bearer_cache_waits_total`,
summed over its workers by GET /metrics) must be 0. The count, not a latency bound: a test never
asserts on wall-clock time.
"""

import threading
import time

import pytest
import requests

from servers import seeded_server, token_request

pytestmark = pytest.mark.server

SECRET = "looper-secret-0123456789"
PASSWORD = "lantern-orbit-meadow-482"
NEW_PASSWORD = "saffron-glacier-ribbon-6402"
SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "clients": [{"client_id": "looper", "client_name": "Looper", "client_secrets": [SECRET],
                 "allowed_grant_types": ["password"], "allow_offline_access": True,
                 "allowed_scopes": ["openid", "offline_access", "IdentityServerApi"]}],
    "users": [{"username": "lou", "email": "lou@example.com", "password": PASSWORD}],
}
LOOPERS = 3  # client threads, each looping refresh + revoke
ROUNDS = 25  # per thread, at most
SECONDS = 8  # and for no longer than this


@pytest.fixture
def server(tmp_path):
    env = {"FLASK_BEARER_CACHE_SECONDS": "0.5", "FLASK_ARGON2_TIME_COST": "1", "FLASK_ARGON2_MEMORY_COST_KIB": "8",
           "FLASK_RATELIMIT_ENABLED": "false"}  # the loop is faster than the per-IP limits
    with seeded_server(tmp_path, SEED, name="revoke-load", env=env) as running:
        yield running


def password_grant(server) -> dict:
    response = token_request(server.url, "looper", SECRET, grant_type="password", username="lou", password=PASSWORD,
                             scope="openid offline_access IdentityServerApi")
    assert response.status_code == 200, f"{response.text}\n{server.log()}"
    return response.json()


def test_a_refresh_and_revoke_loop_holds_no_worker(server):
    # The user's tokens are in use: a token called with twice takes a lease on the user's row,
    # which is what made every later revocation for the user wait.
    used = password_grant(server)["access_token"]
    for _ in range(6):
        response = requests.get(server.url + "/localapi/account", headers={"Authorization": f"Bearer {used}"},
                                timeout=30)
        assert response.status_code == 200, response.text

    refresh_tokens = [password_grant(server)["refresh_token"] for _ in range(LOOPERS)]
    deadline = time.monotonic() + SECONDS
    stop = threading.Event()
    statuses: list[tuple[int, int]] = []  # (refresh, revoke)
    healthz_statuses: list[int] = []

    def loop(refresh_token: str) -> None:
        for _ in range(ROUNDS):
            if time.monotonic() > deadline:
                return
            refreshed = token_request(server.url, "looper", SECRET, grant_type="refresh_token",
                                      refresh_token=refresh_token)
            if refreshed.status_code != 200:
                statuses.append((refreshed.status_code, 0))
                return
            tokens = refreshed.json()
            refresh_token = tokens["refresh_token"]
            revoked = requests.post(server.url + "/connect/revocation", auth=("looper", SECRET), timeout=30,
                                    data={"token": tokens["access_token"], "token_type_hint": "access_token"})
            statuses.append((refreshed.status_code, revoked.status_code))

    def probe() -> None:
        while not stop.is_set():
            healthz_statuses.append(requests.get(server.url + "/healthz", timeout=30).status_code)
            time.sleep(0.02)

    loopers = [threading.Thread(target=loop, args=(token,)) for token in refresh_tokens]
    prober = threading.Thread(target=probe)
    prober.start()
    for thread in loopers:
        thread.start()
    for thread in loopers:
        thread.join(SECONDS + 60)
    stop.set()
    prober.join(60)

    assert statuses and set(statuses) == {(200, 200)}, f"{sorted(set(statuses))}\n{server.log()}"
    assert len(healthz_statuses) >= 10 and set(healthz_statuses) == {200}
    scrape = requests.get(server.url + "/metrics", timeout=30)
    assert scrape.status_code == 200
    assert "# TYPE identity_bearer_cache_waits_total counter" in scrape.text
    assert waits(scrape.text) == 0, f"revocations slept out the lease\n{server.log()}"

    # the control: the lease was there, and a password change (which must wait it out) is counted
    changed = requests.post(server.url + "/localapi/password", headers={"Authorization": f"Bearer {used}"},
                            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                  "confirm_password": NEW_PASSWORD}, timeout=30)
    assert changed.status_code == 204, changed.text
    assert waits(requests.get(server.url + "/metrics", timeout=30).text) == 1


def waits(exposition: str) -> float:
    """identity_bearer_cache_waits_total in a scrape (0 when no worker has counted one yet)."""
    for line in exposition.splitlines():
        if line.startswith("identity_bearer_cache_waits_total "):
            return float(line.split()[1])
    return 0.0
