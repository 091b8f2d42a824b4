"""A worker reuses a bearer check for BEARER_CACHE_SECONDS (services/bearer_cache.py). A password
change or a user's removal waits that out after its commit, so once it has answered the old token
is refused everywhere; a revocation waits for nothing, and is refused by the worker that committed
it at once and by every worker within BEARER_CACHE_SECONDS of its answer.

In-process tests look at the statements run and the lease on the user's row; the last tests run
two gunicorn workers, so the token's answer is remembered in two processes the change cannot
reach, and check that neither accepts the token once the change has answered (a revocation: once
BEARER_CACHE_SECONDS have passed since its answer).
"""

import base64
import json
import threading
import time

import pytest
import requests
from sqlalchemy import select

from actions import AuthActions, OAuthActions
from app import create_app
from conftest import HttpsClient, make_config
from identity.extensions import db
from identity.models import User
from identity.services import accounts, bearer_cache, metrics
from identity.services.seed import apply_seed, load_seed
from identity.services.tokens import verify_access_token
from servers import password_grant_seed, seeded_server, token_request
from statements import statements
from test_audit import mobile_tokens
from test_localapi_support import (  # noqa: F401  (fixtures)
    BASE_URL,
    CHEAP_ARGON2,
    NEW_PASSWORD,
    LocalApi,
    api,
    bearer,
)

CACHED = {**CHEAP_ARGON2, "BEARER_CACHE_SECONDS": 0.5, "SIGNING_KEY_RELOAD_SECONDS": 300,
          "CLIENT_CACHE_SECONDS": 300}


@pytest.fixture
def app_config():
    return dict(CACHED)


def lease_of(app, username: str = "alice"):
    with app.app_context():
        return db.session.scalar(select(User.bearer_cached_until).where(User.username == username))


def statements_for(app, api: LocalApi, token: str) -> int:
    """How many statements one GET /localapi/account (a 200) ran: on the process's read connection
    and through the engine's pool."""
    with statements(app) as run:
        response = api.get_account(token)
    assert response.status_code == 200, response.get_data(as_text=True)
    return run.total


def warm(api: LocalApi) -> None:
    """Load the key ring and the client snapshot and open the read connection, with another token."""
    assert api.get_account(api.token()).status_code == 200


def used_twice(app, api: LocalApi) -> str:
    """A token this process has seen twice, so its answer is remembered under a lease."""
    token = api.token()
    api.get_account(token)
    assert api.get_account(token).status_code == 200
    assert lease_of(app) is not None
    return token


def test_a_token_seen_once_is_checked_in_the_database_and_takes_no_lease(app, api):
    warm(api)
    token = api.token()
    assert statements_for(app, api, token) == 1
    assert lease_of(app) is None


def test_the_second_use_takes_a_lease_and_later_uses_ask_no_database(app, api):
    warm(api)
    token = api.token()
    assert statements_for(app, api, token) == 1
    started = time.time()
    assert statements_for(app, api, token) == 2  # the lease (its own transaction), then the check
    lease = lease_of(app)
    assert lease is not None and started + 0.5 <= lease <= time.time() + 0.5
    assert statements_for(app, api, token) == 0
    assert statements_for(app, api, token) == 0


@pytest.mark.parametrize("app_config", [{**CACHED, "BEARER_CACHE_SECONDS": 0}])
def test_with_the_cache_off_every_use_asks_the_database(app, api):
    warm(api)
    token = api.token()
    assert [statements_for(app, api, token) for _ in range(4)] == [1, 1, 1, 1]
    assert lease_of(app) is None


def test_an_answer_expires_after_the_cache_time(app, api):
    token = used_twice(app, api)
    assert statements_for(app, api, token) == 0
    time.sleep(0.55)
    assert statements_for(app, api, token) == 2  # a new lease, a new check


def test_a_password_change_through_the_local_api_refuses_the_remembered_token_when_it_answers(app, api):
    token = used_twice(app, api)
    response = api.change_password(token)  # itself answered from the worker's memory
    assert response.status_code == 204, response.get_data(as_text=True)
    refused = api.get_account(token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_a_password_set_by_the_operator_refuses_the_remembered_token(app, api):
    token = used_twice(app, api)
    with app.app_context():
        accounts.set_password("alice", NEW_PASSWORD)
    assert api.get_account(token).status_code == 401


def test_a_seed_that_resets_the_password_refuses_the_remembered_token(app, api, seeded):
    token = used_twice(app, api)
    users = [{**user, "password": NEW_PASSWORD} if user["username"] == "alice" else user for user in seeded["users"]]
    with app.app_context():
        report = apply_seed(load_seed(json.dumps({**seeded, "users": users})), reset_passwords=True)
    assert "user alice (password reset)" in report.updated
    assert api.get_account(token).status_code == 401


def test_removing_the_user_refuses_the_remembered_token(app, api):
    token = used_twice(app, api)
    with app.app_context():
        accounts.remove_user("alice")
    assert api.get_account(token).status_code == 401


def test_revoking_the_remembered_token_refuses_it_when_the_endpoint_answers(app, api, client):
    token = used_twice(app, api)
    other = api.token()
    api.get_account(other)
    assert api.get_account(other).status_code == 200
    response = client.post("/connect/revocation", data={"token": token, "token_type_hint": "access_token"},
                           headers={"Authorization": "Basic bW9iaWxlOnMzY3JldA=="})  # mobile:s3cret
    assert response.status_code == 200, response.get_data(as_text=True)
    assert api.get_account(token).status_code == 401
    assert api.get_account(other).status_code == 200  # only that token
    with app.app_context():
        introspection = client.post("/connect/introspect", data={"token": token},
                                    headers={"Authorization": "Basic bW9iaWxlOnMzY3JldA=="})
    assert introspection.status_code == 200 and introspection.get_json() == {"active": False}


def waits() -> float:
    """How many times this process has slept out the bearer cache (identity_bearer_cache_waits_total)."""
    return metrics.REGISTRY.get_sample_value("identity_bearer_cache_waits_total") or 0.0


def test_a_change_waits_only_for_users_whose_tokens_are_remembered(app, api):
    before = waits()
    with app.test_request_context(base_url=BASE_URL):
        alice = db.session.scalar(select(User).where(User.username == "alice")).id
        assert bearer_cache.wait_for_leases([alice]) is False  # no lease yet
    assert waits() == before
    used_twice(app, api)
    with app.test_request_context(base_url=BASE_URL):
        assert bearer_cache.wait_for_leases([alice]) is True
        assert bearer_cache.wait_for_leases([alice], always=True) is True
        assert bearer_cache.wait_for_leases([]) is False
    assert waits() == before + 2  # each sleep counted, for the operator's dashboard


MOBILE_BASIC = {"Authorization": "Basic " + base64.b64encode(b"mobile:s3cret").decode()}


def revoke(client, token: str):
    response = client.post("/connect/revocation", data={"token": token, "token_type_hint": "access_token"},
                           headers=MOBILE_BASIC)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


@pytest.mark.parametrize("app_config", [{**CACHED, "BEARER_CACHE_SECONDS": 5}])
def test_a_revocation_waits_for_no_lease(app, api, client):
    """The user's tokens are remembered under a lease (which a password change would wait out, 5 s
    here); revoking one of them answers without waiting, and this worker refuses it at once."""
    token = used_twice(app, api)
    before = waits()
    revoke(client, token)
    assert waits() == before  # the old commit slept the full 5 s here
    assert api.get_account(token).status_code == 401


@pytest.mark.parametrize("app_config", [{**CACHED, "BEARER_CACHE_SECONDS": 5}])
def test_a_reused_refresh_token_revokes_its_family_without_waiting(app, api, client):
    """Refresh-token reuse (like a code replay) revokes access tokens by jti: no wait either."""
    used_twice(app, api)  # alice's tokens are remembered under a lease
    assert AuthActions(client).login().status_code == 302
    refresh_token = mobile_tokens(client)["refresh_token"]
    oauth = OAuthActions(client)
    assert oauth.token("mobile", grant_type="refresh_token", refresh_token=refresh_token).status_code == 200
    before = waits()
    reused = oauth.token("mobile", grant_type="refresh_token", refresh_token=refresh_token)
    assert reused.status_code == 400 and reused.get_json()["error"] == "invalid_grant"
    assert waits() == before  # the old commit slept the full 5 s here


@pytest.mark.parametrize("app_config", [{**CACHED, "BEARER_CACHE_SECONDS": 1.5}])
def test_another_worker_refuses_a_revoked_token_within_the_cache_time(app, api, client, database_uri):
    """A second app on the same database stands for another worker: it keeps its remembered answer
    for at most BEARER_CACHE_SECONDS after the revocation answered (RFC 7009 section 2), then refuses."""
    token = used_twice(app, api)
    other = create_app(make_config(database_uri, **{**CACHED, "BEARER_CACHE_SECONDS": 1.5}))
    other.test_client_class = HttpsClient  # the issuer the tokens name
    other_api = LocalApi(other, other.test_client())
    other_api.get_account(token)
    assert other_api.get_account(token).status_code == 200  # remembered there too
    revoke(client, token)
    answered = time.monotonic()
    assert api.get_account(token).status_code == 401  # the revoking worker: at once
    time.sleep(max(0.0, answered + 1.5 - time.monotonic()) + 0.05)
    assert other_api.get_account(token).status_code == 401
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_an_answer_is_not_reused_for_a_token_with_another_subject(app, api):
    """The memory is keyed by jti; a forged jti collision with another subject is not answered from it."""
    token = used_twice(app, api)
    with app.test_request_context(base_url=BASE_URL):
        claims = verify_access_token(token)
        row = bearer_cache.live_row(claims["sub"], claims["jti"], lambda sub, jti: None)
        assert row is not None and row[1] == claims["sub"]
        assert bearer_cache.live_row("someone-else", claims["jti"], lambda sub, jti: "asked") == "asked"


class _TakenMeanwhile(dict):
    """An answers map where another thread drops the expired answer just after this one read it."""

    def get(self, key, default=None):
        return super().pop(key, default)


def test_an_expired_answer_another_thread_dropped_meanwhile_is_asked_again(app):
    """Two threads of a threaded server meeting the same expired answer: the second to drop it finds
    it gone, and still answers (the database's), not a KeyError (a 500)."""
    with app.app_context():
        answers = _TakenMeanwhile(jti=(("row",), time.monotonic() - 1, "sub"))
        app.extensions["identity_bearer_cache"] = (answers, {"jti": time.monotonic() - 120})
        assert bearer_cache.live_row("sub", "jti", lambda sub, jti: ("asked",)) == ("asked",)


# --- across worker processes ----------------------------------------------------------------

SECRET = "cache-secret-0123456789"
PASSWORD = "lantern-orbit-meadow-482"
CHANGED = "copper-thistle-harbor-736"
SEED = password_grant_seed("cacher", SECRET, "carol", PASSWORD)


CACHE_SECONDS = 1


@pytest.fixture
def server(tmp_path):
    env = {"FLASK_BEARER_CACHE_SECONDS": str(CACHE_SECONDS), "FLASK_ARGON2_TIME_COST": "1", "FLASK_ARGON2_MEMORY_COST_KIB": "8",
           "FLASK_RATELIMIT_ENABLED": "false"}  # the racing test calls faster than the per-IP limit
    with seeded_server(tmp_path, SEED, name="cache", env=env) as running:
        yield running


def carol_token(server, password: str = PASSWORD) -> str:
    response = token_request(server.url, "cacher", SECRET, grant_type="password", username="carol",
                             password=password, scope="openid IdentityServerApi")
    assert response.status_code == 200, f"{response.text}\n{server.log()}"
    return response.json()["access_token"]


def account_statuses(server, token: str, count: int) -> list[int]:
    """`count` calls on new connections, so both workers take them."""
    return [requests.get(server.url + "/localapi/account", headers=bearer(token), timeout=30).status_code
            for _ in range(count)]


@pytest.mark.server
def test_no_worker_accepts_the_token_once_the_password_change_has_answered(server):
    token = carol_token(server)
    assert account_statuses(server, token, 40) == [200] * 40  # remembered in both workers
    change = requests.post(server.url + "/localapi/password", headers=bearer(token), timeout=30,
                           json={"current_password": PASSWORD, "new_password": CHANGED, "confirm_password": CHANGED})
    assert change.status_code == 204, f"{change.text}\n{server.log()}"
    assert account_statuses(server, token, 20) == [401] * 20
    assert account_statuses(server, carol_token(server, CHANGED), 4) == [200] * 4


@pytest.mark.server
def test_no_worker_accepts_a_revoked_token_once_the_cache_time_has_passed_since_revocation_answered(server):
    token = carol_token(server)
    assert account_statuses(server, token, 40) == [200] * 40
    revoked = requests.post(server.url + "/connect/revocation", data={"token": token}, auth=("cacher", SECRET), timeout=30)
    assert revoked.status_code == 200, f"{revoked.text}\n{server.log()}"
    time.sleep(CACHE_SECONDS)
    assert account_statuses(server, token, 20) == [401] * 20


@pytest.mark.server
def test_no_worker_accepts_the_token_of_a_user_the_operator_removed(server):
    token = carol_token(server)
    assert account_statuses(server, token, 40) == [200] * 40
    removed = server.cli(["users", "remove", "carol"])
    assert removed.returncode == 0, removed.stderr
    assert account_statuses(server, token, 20) == [401] * 20


def race(server, token: str, change, late_after: float = 0.0) -> tuple[list[tuple[float, int]], float]:
    """Four threads call with the token without pause, so leases are taken in both workers while
    `change()` commits; returns every call (sent at, status) and when the change's answer arrived.

    The calls go on until a few of them were sent more than `late_after` seconds after that answer
    (up to 30 s), so a loaded machine cannot leave the test with no late call to judge."""
    stop = threading.Event()
    calls: list[tuple[float, int]] = []

    def hammer():
        while not stop.is_set():
            sent = time.monotonic()
            status = requests.get(server.url + "/localapi/account", headers=bearer(token), timeout=30).status_code
            calls.append((sent, status))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        change()
        answered = time.monotonic()
        time.sleep(CACHE_SECONDS + 0.5)
        deadline = time.monotonic() + 30
        while sum(sent > answered + late_after for sent, _ in list(calls)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return calls, answered


@pytest.mark.server
def test_no_call_that_starts_after_a_password_change_answered_is_accepted_while_both_workers_race(server):
    """The guarantee: no request sent after a password change has answered is accepted with an older token."""
    passwords = [PASSWORD, CHANGED]
    for round_ in range(4):
        current, new = passwords[round_ % 2], passwords[(round_ + 1) % 2]
        token = carol_token(server, current)

        def change():
            response = requests.post(server.url + "/localapi/password", headers=bearer(token), timeout=30,
                                     json={"current_password": current, "new_password": new, "confirm_password": new})
            assert response.status_code == 204, f"{response.text}\n{server.log()}"

        calls, answered = race(server, token, change)
        before = [status for sent, status in calls if sent < answered]
        after = [status for sent, status in calls if sent > answered]
        assert 200 in before and after, (len(before), len(after))
        assert set(after) == {401}, sorted(set(after))


@pytest.mark.server
def test_no_call_that_starts_the_cache_time_after_a_revocation_answered_is_accepted_while_both_workers_race(server):
    """A revocation waits for no one: calls sent up to BEARER_CACHE_SECONDS after its answer may
    still be accepted by a worker that remembered the token; none sent later is."""
    for _ in range(4):
        token = carol_token(server)

        def change():
            revoked = requests.post(server.url + "/connect/revocation", data={"token": token},
                                    auth=("cacher", SECRET), timeout=30)
            assert revoked.status_code == 200, f"{revoked.text}\n{server.log()}"

        calls, answered = race(server, token, change, late_after=CACHE_SECONDS)
        before = [status for sent, status in calls if sent < answered]
        late = [status for sent, status in calls if sent > answered + CACHE_SECONDS]
        assert 200 in before and late, (len(before), len(late))
        assert set(late) == {401}, sorted(set(late))
