"""Several instances behind a load balancer: two gunicorn servers (2 workers each) on two
loopback ports, sharing one PostgreSQL database, one SECRET_KEY, one issuer and one Redis
for rate limits. Whatever one instance issues or records, the other honours.

Needs PostgreSQL (FLASK_SQLALCHEMY_DATABASE_URI) and Redis (IDENTITY_TEST_REDIS_URL);
`.ci/run` provides both. Each test uses users of its own, so the servers are started once.
"""

import base64
import json
import os
import secrets
import time

import pytest
import requests

from conftest import seeded_database
from servers import (
    AppServer,
    authorize,
    csrf_from,
    redirect_params,
    sign_in,
    token_request,
    two_instances,
)

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")
REDIS_URL = os.environ.get("IDENTITY_TEST_REDIS_URL", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.server,
    pytest.mark.skipif(
        not DATABASE_URI.startswith("postgresql"),
        reason="needs PostgreSQL shared by both instances: set FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://... (.ci/run does)",
    ),
]

ISSUER = "https://id.example.test"  # the load balancer's address, the same for both instances
SECRET = "webapp-secret-0123456789"
REDIRECT_URI = "http://127.0.0.1:9/callback"
LOCKOUT_MAX_FAILURES = 3
SENSITIVE_LIMIT = 30  # sign-in POSTs per minute per client IP, counted across every instance
KEY_PROPAGATION_SECONDS = 10  # a rotated key signs this long after it is published (> 2 s JWKS cache + 5 s reload)

USERS = {
    "signin": "amber-falcon-river-314",
    "tokens": "granite-willow-echo-271",
    "changer": "harbor-mosaic-lumen-858",
    "lockout": "saffron-glacier-ink-642",
    "mixed": "quiet-ember-tundra-509",
}
NEW_PASSWORD = "pepper-nebula-canyon-735"

SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "clients": [
        {
            "client_id": "webapp",
            "client_name": "Web App",
            "client_secrets": [SECRET],
            "allowed_grant_types": ["authorization_code"],
            "redirect_uris": [REDIRECT_URI],
            "require_consent": False,
            "require_pkce": True,
            "allowed_scopes": ["openid", "profile", "email", "offline_access", "IdentityServerApi"],
            "allow_offline_access": True,
        },
        {
            "client_id": "service",
            "client_name": "Back-end Service",
            "client_secrets": ["service-secret-change-me"],
            "allowed_grant_types": ["client_credentials"],
            "allowed_scopes": ["IdentityServerApi"],
        },
    ],
    "users": [
        {"username": name, "email": f"{name}@example.com", "password": password, "name": name.title()}
        for name, password in USERS.items()
    ],
}


@pytest.fixture(scope="module")
def shared_database(_migrated, database_uri):
    """The suite's PostgreSQL database, emptied and seeded once for this module."""
    if not REDIS_URL:
        message = "needs Redis for shared rate limits: set IDENTITY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must provide it")
        pytest.skip(message)
    return seeded_database(database_uri, SEED)


@pytest.fixture(scope="module")
def instances(shared_database, tmp_path_factory):
    """Instances A and B, 2 workers each, started once for the module."""
    log_dir = tmp_path_factory.mktemp("instances")
    env = {
        "FLASK_LOCKOUT_MAX_FAILURES": str(LOCKOUT_MAX_FAILURES),
        "FLASK_RATELIMIT_SENSITIVE": f"{SENSITIVE_LIMIT} per minute",
        "FLASK_RATELIMIT_STRATEGY": "moving-window",
        # Counters of this run only, whatever an earlier run left in Redis.
        "FLASK_RATELIMIT_KEY_PREFIX": "identity-test-" + secrets.token_hex(6),
        # A staged key rotation that completes within the test: the new key signs after
        # PROPAGATION, which must exceed the JWKS cache lifetime plus the 5 s reload interval.
        "FLASK_DISCOVERY_CACHE_SECONDS": "2",
        "FLASK_SIGNING_KEY_PROPAGATION_SECONDS": str(KEY_PROPAGATION_SECONDS),
    }
    common = dict(workers=2, issuer=ISSUER, ratelimit_storage_uri=REDIS_URL, env=env, log_dir=log_dir)
    with two_instances(shared_database, **common) as both:
        yield both


def logs(*servers) -> str:
    return "\n".join(f"--- {s.name} ---\n{s.log(40)}" for s in servers)


def jwt_header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def jwt_claims(token: str) -> dict:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def browser_signed_in(server: AppServer, username: str, password: str | None = None) -> requests.Session:
    browser = requests.Session()
    response = sign_in(browser, server.url, username, password or USERS[username])
    assert response.status_code == 302, f"sign-in on {server.name} failed: {response.status_code}\n{logs(server)}"
    return browser


def code_on(server: AppServer, browser: requests.Session, scope: str) -> tuple[str, str]:
    response, verifier = authorize(browser, server.url, client_id="webapp", redirect_uri=REDIRECT_URI, scope=scope)
    assert response.status_code == 302, f"{response.status_code} {response.text[:500]}\n{logs(server)}"
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI), f"authorize on {server.name} did not return to the client: {location}"
    params = redirect_params(response)
    assert "code" in params, params
    return params["code"], verifier


def redeem_on(server: AppServer, code: str, verifier: str) -> dict:
    response = token_request(server.url, "webapp", SECRET, grant_type="authorization_code", code=code,
                             redirect_uri=REDIRECT_URI, code_verifier=verifier)
    assert response.status_code == 200, f"{response.text}\n{logs(server)}"
    return response.json()


def user_tokens(issuer_server: AppServer, username: str,
                scope: str = "openid profile offline_access IdentityServerApi") -> dict:
    browser = browser_signed_in(issuer_server, username)
    return redeem_on(issuer_server, *code_on(issuer_server, browser, scope))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def introspect_on(server: AppServer, token: str, client=("webapp", SECRET)) -> dict:
    response = requests.post(server.url + "/connect/introspect", data={"token": token}, auth=client, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def client_credentials_token(server: AppServer) -> str:
    response = token_request(server.url, "service", "service-secret-change-me", grant_type="client_credentials",
                             scope="IdentityServerApi")
    assert response.status_code == 200, f"{response.text}\n{logs(server)}"
    return response.json()["access_token"]


# --- the tests --------------------------------------------------------------------------------


def test_both_instances_are_ready_and_describe_the_same_issuer(instances):
    a, b = instances
    for server in (a, b):
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    discovery = [requests.get(s.url + "/.well-known/openid-configuration", timeout=10).json() for s in (a, b)]
    assert discovery[0] == discovery[1]
    assert discovery[0]["issuer"] == ISSUER
    jwks = [requests.get(s.url + "/.well-known/openid-configuration/jwks", timeout=10).json() for s in (a, b)]
    assert {k["kid"] for k in jwks[0]["keys"]} == {k["kid"] for k in jwks[1]["keys"]}


def test_sign_in_on_a_then_authorize_on_b(instances):
    """The cookie from A is a session on B (shared SECRET_KEY, sessions in the shared database)."""
    a, b = instances
    browser = browser_signed_in(a, "signin")
    code, verifier = code_on(b, browser, "openid profile")
    tokens = redeem_on(a, code, verifier)  # a code from B is redeemed on A
    claims = jwt_claims(tokens["id_token"])
    assert claims["iss"] == ISSUER
    userinfo = requests.get(b.url + "/connect/userinfo", headers=bearer(tokens["access_token"]), timeout=30)
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == claims["sub"]


def test_token_from_a_is_accepted_by_b(instances):
    a, b = instances
    tokens = user_tokens(a, "tokens")
    account = requests.get(b.url + "/localapi/account", headers=bearer(tokens["access_token"]), timeout=30)
    assert account.status_code == 200, f"{account.text}\n{logs(b)}"
    assert account.json()["username"] == "tokens"

    described = introspect_on(b, tokens["access_token"])
    assert described["active"] is True and described["client_id"] == "webapp", described
    assert introspect_on(b, tokens["refresh_token"])["active"] is True

    # A refresh token from A is rotated on B, and the new one works on A.
    rotated = token_request(b.url, "webapp", SECRET, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    again = token_request(a.url, "webapp", SECRET, grant_type="refresh_token", refresh_token=rotated.json()["refresh_token"])
    assert again.status_code == 200, again.text

    service_token = client_credentials_token(a)
    assert introspect_on(b, service_token, client=("service", "service-secret-change-me"))["active"] is True


def test_key_rotated_through_a_is_used_and_published_by_b(instances):
    a, b = instances
    before = client_credentials_token(b)
    old_kid = jwt_header(before)["kid"]

    rotated = a.cli(["keys", "rotate"])
    assert "is published and signs from" in rotated.stdout, rotated.stdout
    # staged: the new key does not sign before the propagation time
    assert jwt_header(client_credentials_token(b))["kid"] == old_kid

    # B signs with the new key once it activates (then within its reload interval, 5 s).
    deadline = time.monotonic() + KEY_PROPAGATION_SECONDS + 20
    while True:
        token = client_credentials_token(b)
        if jwt_header(token)["kid"] != old_kid:
            break
        assert time.monotonic() < deadline, "B still signs with the retired key 20 s after the new one activated"
        time.sleep(0.5)
    new_kid = jwt_header(token)["kid"]
    assert new_kid in rotated.stdout

    # Each worker re-reads the key table within the same interval: both keys appear everywhere.
    for server in (a, b):
        while True:
            kids = {k["kid"] for k in requests.get(server.url + "/.well-known/openid-configuration/jwks", timeout=10).json()["keys"]}
            if {old_kid, new_kid} <= kids:
                break
            assert time.monotonic() < deadline, f"{server.name} publishes {kids} 20 s after the rotation"
            time.sleep(0.5)

    # Tokens signed before and after the rotation are accepted by both instances.
    for server in (a, b):
        for signed in (before, token):
            assert introspect_on(server, signed, client=("service", "service-secret-change-me"))["active"] is True
    fresh_from_a = client_credentials_token(a)
    assert introspect_on(b, fresh_from_a, client=("service", "service-secret-change-me"))["active"] is True


def test_password_changed_through_b_revokes_what_a_issued(instances):
    a, b = instances
    tokens = user_tokens(a, "changer")
    other_browser = browser_signed_in(a, "changer")
    assert other_browser.get(a.url + "/account/password", timeout=30, allow_redirects=False).status_code == 200
    # In repeated use on A, so A's workers answer it from their bearer cache under a lease.
    in_use = [requests.get(a.url + "/localapi/account", headers=bearer(tokens["access_token"]), timeout=30).status_code
              for _ in range(20)]
    assert in_use == [200] * 20

    changed = requests.post(b.url + "/localapi/password", headers=bearer(tokens["access_token"]), timeout=30, json={
        "current_password": USERS["changer"], "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 204, f"{changed.text}\n{logs(b)}"

    refreshed = token_request(a.url, "webapp", SECRET, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant", refreshed.text
    after = [requests.get(a.url + "/localapi/account", headers=bearer(tokens["access_token"]), timeout=30).status_code
             for _ in range(20)]
    assert after == [401] * 20  # every worker of A, at once after B answered
    assert introspect_on(a, tokens["access_token"])["active"] is False

    # The browser session started on A is over, on A and on B.
    for server in (a, b):
        page = other_browser.get(server.url + "/account/password", timeout=30, allow_redirects=False)
        assert page.status_code == 302 and "/account/login" in page.headers["Location"], (server.name, page.status_code)

    # The old password is refused and the new one works, on either instance.
    assert sign_in(requests.Session(), a.url, "changer", USERS["changer"]).status_code == 400
    browser_signed_in(a, "changer", NEW_PASSWORD)


def test_lockout_counted_on_a_holds_on_b(instances):
    a, b = instances
    for _ in range(LOCKOUT_MAX_FAILURES):
        assert sign_in(requests.Session(), a.url, "lockout", "wrong-password-" + secrets.token_hex(4)).status_code == 400
    refused = sign_in(requests.Session(), b.url, "lockout", USERS["lockout"])
    assert refused.status_code == 400, "B let a locked account sign in with the right password"


def test_failures_on_both_instances_add_up(instances):
    a, b = instances
    servers = [a, b]
    for attempt in range(LOCKOUT_MAX_FAILURES):
        server = servers[attempt % 2]
        assert sign_in(requests.Session(), server.url, "mixed", "wrong-password-" + secrets.token_hex(4)).status_code == 400
    for server in servers:
        assert sign_in(requests.Session(), server.url, "mixed", USERS["mixed"]).status_code == 400, server.name


def test_sign_in_rate_limit_is_shared_through_redis(instances):
    """RATELIMIT_SENSITIVE counts sign-in POSTs per client IP in Redis, so alternating between the
    instances (and their workers) buys no extra attempts. With per-process memory storage the four
    workers would allow four times the limit."""
    a, b = instances
    servers = [a, b]
    browsers = [requests.Session(), requests.Session()]
    forms = []
    for server, browser in zip(servers, browsers):
        page = browser.get(server.url + "/account/login", timeout=30)
        forms.append(csrf_from(page.text))
    limited_at = None
    for attempt in range(SENSITIVE_LIMIT + 1):
        i = attempt % 2
        response = browsers[i].post(servers[i].url + "/account/login", allow_redirects=False, timeout=30, data={
            "csrf_token": forms[i], "username": "nobody-" + secrets.token_hex(4), "password": "not-the-password-at-all"})
        if response.status_code == 429:
            limited_at = attempt
            break
        assert response.status_code == 400, response.status_code
    assert limited_at is not None, f"no 429 after {SENSITIVE_LIMIT + 1} sign-in attempts spread over A and B"
    other = (limited_at + 1) % 2
    response = browsers[other].post(servers[other].url + "/account/login", allow_redirects=False, timeout=30, data={
        "csrf_token": forms[other], "username": "nobody", "password": "not-the-password-at-all"})
    assert response.status_code == 429, f"{servers[other].name} did not share the limit"
