"""The local API's protection (RFC 6750 bearer tokens checked locally) and GET /localapi/account."""

import re
import time

import pytest
from sqlalchemy import select

from identity.constants import LOCAL_API_SCOPE
from identity.extensions import db
from identity.models import User
from identity.services import browser_sessions
from identity.services.tokens import revoke_access_token, verify_access_token
from statements import statements
from test_localapi_support import (  # noqa: F401  (fixtures)
    ALICE_PASSWORD,
    BASE_URL,
    LocalApi,
    api,
    app_config,
    bearer,
    other_keys,
    problem_of,
)

ENDPOINTS = [("get", "/localapi/account"), ("post", "/localapi/password"), ("get", "/localapi/openapi.json")]
INVALID_TOKEN = re.compile(r'^Bearer error="invalid_token"(, error_description="[^"]*")?$')


def call(api: LocalApi, method: str, path: str, token: str | None = None, **kwargs):
    kwargs.setdefault("headers", bearer(token))
    if method == "post":
        kwargs.setdefault("json", {})
    return getattr(api.client, method)(path, **kwargs)


def assert_invalid_token(response):
    assert response.status_code == 401
    assert INVALID_TOKEN.match(response.headers["WWW-Authenticate"]), response.headers["WWW-Authenticate"]
    assert problem_of(response)["title"] == "Unauthorized"


# --- no token, or no usable token: 401 --------------------------------------------


@pytest.mark.parametrize("method, path", ENDPOINTS)
def test_no_token_is_a_bare_challenge(api, method, path):
    response = call(api, method, path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    problem_of(response)


@pytest.mark.parametrize("authorization", ["Basic YWxpY2U6c2VjcmV0", "Token abc", "Negotiate"])
def test_other_schemes_are_a_bare_challenge(api, authorization):
    response = api.client.get("/localapi/account", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer    ", "bearer not-a-jwt", "Bearer a.b.c", "Bearer a b c"])
def test_malformed_tokens_are_invalid(api, authorization):
    assert_invalid_token(api.client.get("/localapi/account", headers={"Authorization": authorization}))


def test_scheme_is_case_insensitive(api):
    response = api.client.get("/localapi/account", headers={"Authorization": "bEaReR " + api.token()})
    assert response.status_code == 200


def test_token_in_query_or_body_is_not_accepted(api):
    token = api.token()
    assert api.client.get(f"/localapi/account?access_token={token}").status_code == 401
    response = api.client.post("/localapi/password", data={"access_token": token})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_browser_session_alone_is_refused(app, api):
    """A signed-in browser (cookie session) gets 401: cookies never authenticate /localapi."""
    with app.test_request_context(base_url=BASE_URL):
        sid = browser_sessions.start_session(db.session.scalar(select(User).where(User.username == "alice"))).sid
    with api.client.session_transaction() as session:
        session["_user_id"] = sid
        session["_fresh"] = True
    for method, path in ENDPOINTS:
        response = call(api, method, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


def with_claims_of(token: str, other: str) -> str:
    """`token` with its payload swapped for `other`'s, keeping its header and signature."""
    head, _, signature = token.split(".")
    return ".".join([head, other.split(".")[1], signature])


def tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return ".".join([head, payload, signature[:middle] + flipped + signature[middle + 1:]])


NOW = int(time.time())
FORGERIES = {  # name: (make a token, the reason it is refused)
    "tampered signature": (lambda api: tampered(api.token()), "bad signature"),
    "tampered claims": (lambda api: with_claims_of(api.forge(), api.forge({"scope": f"{LOCAL_API_SCOPE} admin"})),
                        "bad signature"),
    "alg none": (lambda api: api.forge_raw("none", None), "algorithm not allowed"),
    "HS256 with the public key as secret": (lambda api: api.forge_raw("HS256", api.public_pem()),
                                            "algorithm not allowed"),
    "a stranger's EC key under our ES256 kid": (lambda api: api.forge(key=other_keys()[1], alg="ES256"),
                                                "bad signature"),
    "a stranger's RSA key under our RS256 kid": (lambda api: api.forge(key=other_keys()[0], alg="RS256",
                                                                       header={"kid": api.kid("RS256")}),
                                                 "bad signature"),
    "RS256 header on our ES256 kid": (lambda api: api.forge(key=other_keys()[0], alg="RS256"), "unknown signing key"),
    "expired": (lambda api: api.forge({"iat": NOW - 7200, "nbf": NOW - 7200, "exp": NOW - 3600}), "token expired"),
    "not yet valid": (lambda api: api.forge({"nbf": NOW + 3600}), "token not yet valid"),
    "issued in the future": (lambda api: api.forge({"iat": NOW + 3600}), "token issued in the future"),
    "without exp": (lambda api: api.forge({"exp": None}), "token expired"),
    "another issuer": (lambda api: api.forge({"iss": "https://evil.example"}), "wrong issuer"),
    "wrong typ (an ID token)": (lambda api: api.forge(header={"typ": "JWT"}), "wrong token type"),
    "no typ": (lambda api: api.forge(header={"typ": None}), "wrong token type"),
    "unknown kid": (lambda api: api.forge(header={"kid": "no-such-key"}), "unknown signing key"),
    "no kid": (lambda api: api.forge(header={"kid": None}), "unknown signing key"),
    "oversized": (lambda api: api.forge({"padding": "x" * 10_000}), "malformed token"),
    "no scope claim": (lambda api: api.forge({"scope": None}), "missing claims"),
    "stale password version": (lambda api: api.forge({"pwv": 0}), "the access token was revoked"),
    "unknown subject": (lambda api: api.forge({"sub": "nobody-has-this-subject"}), "the access token was revoked"),
}


@pytest.mark.parametrize("method, path", ENDPOINTS[:2])
@pytest.mark.parametrize("forgery, reason", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_and_unusable_tokens_are_invalid(api, forgery, reason, method, path):
    before = api.user_row()
    response = call(api, method, path, forgery(api))
    assert_invalid_token(response)
    assert response.headers["WWW-Authenticate"].endswith(f'error_description="{reason}"')
    assert api.user_row() == before


def test_a_token_forged_by_hand_with_our_key_is_accepted(api):
    """The forging helper itself is sound, so the refusals above are about what they change."""
    assert api.get_account(api.forge()).status_code == 200
    assert api.get_account(api.forge(alg="RS256", header={"kid": api.kid("RS256")})).status_code == 200


@pytest.mark.parametrize("client_id, username", [("mobile", "alice"), ("service", None)])
def test_revoked_token_is_invalid(app, api, client_id, username):
    token = api.token(client_id=client_id, username=username)
    with app.test_request_context(base_url=BASE_URL):
        claims = verify_access_token(token)
        revoke_access_token(claims["jti"], claims["exp"], None)
        db.session.commit()
    assert_invalid_token(api.get_account(token))


def test_token_of_a_removed_user_is_invalid(app, api):
    token = api.token()
    with app.app_context():
        db.session.delete(db.session.scalar(select(User).where(User.username == "alice")))
        db.session.commit()
    assert_invalid_token(api.get_account(token))


# --- scope and user: 403 -----------------------------------------------------------


@pytest.mark.parametrize("method, path", ENDPOINTS)
@pytest.mark.parametrize("scope", ["openid", "openid profile email offline_access", "identityserverapi", "IdentityServerApi2"])
def test_token_without_the_scope_is_forbidden(api, method, path, scope):
    response = call(api, method, path, api.token(scope))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == f'Bearer error="insufficient_scope", scope="{LOCAL_API_SCOPE}"'
    assert problem_of(response)["title"] == "Forbidden"


@pytest.mark.parametrize("method, path", ENDPOINTS[:2])
def test_client_credentials_token_is_forbidden(api, method, path):
    before = api.user_row()
    response = call(api, method, path, api.token(LOCAL_API_SCOPE, client_id="service", username=None))
    assert response.status_code == 403
    assert "user" in problem_of(response)["detail"]
    # RFC 6750 section 3: a refused bearer request carries a challenge; the token's scope is right,
    # it is the sign-in that is missing (RFC 9470's error)
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="this resource needs a token issued to a user, not to a client alone"')
    assert api.user_row() == before


def test_scope_is_checked_before_the_user(api):
    response = api.get_account(api.token("openid", client_id="service", username=None))
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_scope"')


# --- GET /localapi/account -----------------------------------------------------------


def test_account_returns_the_token_user(api):
    response = api.get_account(api.token())
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    row = api.user_row()
    assert body == {
        "sub": row["subject"],
        "username": "alice",
        "email": "alice@example.com",
        "email_verified": False,
        "pending_email": None,
        "name": "Alice Example",
        "password_changed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["password_changed_at"])),
        "mfa_enabled": False,
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_account_works_with_the_scope_alone(api):
    assert api.get_account(api.token(LOCAL_API_SCOPE)).status_code == 200


def test_account_sets_no_cookie(api):
    response = api.get_account(api.token())
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 300, "CLIENT_CACHE_SECONDS": 300}])
def test_account_costs_one_query(app, api):
    """The hot path: verify the signature in memory (and the client against the worker's
    snapshot), then one query for the live user, on the process's read connection; the session
    and its pool are not touched. (A token's later uses: tests/test_bearer_cache.py.)"""
    token = api.token()
    api.get_account(api.token())  # warm the key ring and open the read connection, with another token
    with statements(app) as run:
        assert api.get_account(token).status_code == 200
    assert run.pooled == []
    assert run.autocommit == 1


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 300}])
def test_account_sees_a_password_change_at_once(app, api):
    """The read connection is in autocommit: a change committed elsewhere is seen by the next request."""
    token = api.token()
    assert api.get_account(token).status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user.password_version += 1
        db.session.commit()
    response = api.get_account(token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_method_not_allowed_is_a_problem(api):
    response = api.client.delete("/localapi/account", headers=bearer(api.token()))
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    problem_of(response)


def test_unknown_path_is_a_problem(api):
    response = api.client.get("/localapi/nothing-here", headers=bearer(api.token()))
    assert response.status_code == 404
    problem_of(response)


def test_password_change_needs_no_csrf_token(app, api):
    """Bearer requests are exempt from CSRF; the body is judged on its own (here: wrong password)."""
    assert app.config.get("WTF_CSRF_ENABLED", True)
    response = api.change_password(api.token(), current="not-" + ALICE_PASSWORD)
    assert response.status_code == 400
    assert "current_password" in problem_of(response)["errors"]


# --- tokens of a removed or disabled client ---------------------------------------------------


def remove_client(app, client_id: str) -> None:
    from identity.services.clients import remove_client as remove

    with app.app_context():
        remove(client_id)


def set_client_enabled(app, client_id: str, enabled: bool) -> None:
    from identity.models import Client

    with app.app_context():
        db.session.scalar(select(Client).where(Client.client_id == client_id)).enabled = enabled
        db.session.commit()


def test_a_removed_clients_tokens_are_refused(app, api):
    user_token = api.token(client_id="mobile")
    service_token = api.token(scope=LOCAL_API_SCOPE, client_id="service", username=None)
    assert api.get_account(user_token).status_code == 200
    assert call(api, "get", "/localapi/openapi.json", service_token).status_code == 200
    assert api.client.get("/connect/userinfo", headers=bearer(user_token)).status_code == 200
    remove_client(app, "mobile")
    remove_client(app, "service")
    assert_invalid_token(api.get_account(user_token))
    assert_invalid_token(call(api, "get", "/localapi/openapi.json", service_token))
    assert api.client.get("/connect/userinfo", headers=bearer(user_token)).status_code == 401


def test_a_removed_clients_tokens_stay_refused_when_its_id_is_registered_again(app, api):
    """An operator removes a client (say, its secret leaked) and registers one under the same id:
    the tokens issued to the removed one must not come back with the new registration."""
    import time

    from identity.models import Client

    token = api.token(client_id="mobile")
    assert api.get_account(token).status_code == 200
    with app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        columns = {c.key: getattr(row, c.key) for c in Client.__table__.columns if c.key not in ("id", "created_at")}
    remove_client(app, "mobile")
    time.sleep(1.1)  # registered again a second later (timestamps are whole seconds)
    with app.app_context():
        from identity.clock import now

        db.session.add(Client(**columns, created_at=now()))
        db.session.commit()
    assert_invalid_token(api.get_account(token))
    assert api.client.get("/connect/userinfo", headers=bearer(token)).status_code == 401
    assert api.get_account(api.token(client_id="mobile")).status_code == 200  # the new one's own tokens work


def test_a_disabled_clients_tokens_are_refused_until_it_is_enabled_again(app, api):
    token = api.token(client_id="mobile")
    set_client_enabled(app, "mobile", False)
    assert_invalid_token(api.get_account(token))
    set_client_enabled(app, "mobile", True)
    assert api.get_account(token).status_code == 200


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 1}])
def test_with_client_snapshots_a_removal_returns_once_the_snapshots_are_out_of_date(app, api):
    """As deployed (CLIENT_CACHE_SECONDS = 5): the removal returns once every worker's snapshot
    of the client predating it has run out, so the tokens are refused at once after it."""
    import time

    token = api.token(client_id="mobile")
    assert api.get_account(token).status_code == 200  # the worker holds a snapshot of the client
    started = time.monotonic()
    remove_client(app, "mobile")
    assert time.monotonic() - started >= 1
    assert_invalid_token(api.get_account(token))
