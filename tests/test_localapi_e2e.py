"""The seed scenario end to end against a running server (real HTTP): the `mobile` app signs alice in
(hybrid + PKCE), changes her password through /localapi/password, and everything issued before stops working."""

import secrets

import pytest
import requests

from servers import authorize, redirect_params, sign_in, token_request
from test_localapi_support import ALICE_PASSWORD, NEW_PASSWORD, app_config  # noqa: F401  (fixture)

MOBILE = {"client_id": "mobile", "secret": "s3cret", "redirect_uri": "com.example.app:/callback"}
SCOPE = "openid profile IdentityServerApi offline_access"


@pytest.fixture
def server(live_server, seeded):
    return live_server.url


def mobile_sign_in(base: str, password: str = ALICE_PASSWORD) -> tuple[requests.Session, dict]:
    """Sign in in a browser, run the hybrid flow with PKCE, redeem the code; return the browser and the tokens."""
    browser = requests.Session()
    assert sign_in(browser, base, "alice", password).status_code == 302
    response, verifier = authorize(browser, base, client_id=MOBILE["client_id"], redirect_uri=MOBILE["redirect_uri"],
                                   scope=SCOPE, response_type="code id_token", nonce=secrets.token_urlsafe(12))
    assert response.status_code == 302 and response.headers["Location"].startswith(MOBILE["redirect_uri"]), response.text
    params = redirect_params(response)
    assert {"code", "id_token"} <= params.keys(), params
    tokens = token_request(base, MOBILE["client_id"], MOBILE["secret"], grant_type="authorization_code",
                           code=params["code"], redirect_uri=MOBILE["redirect_uri"], code_verifier=verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert set(body["scope"].split()) == set(SCOPE.split())
    assert body["refresh_token"]
    return browser, body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def introspect(base: str, token: str) -> dict:
    response = requests.post(base + "/connect/introspect", data={"token": token},
                             auth=(MOBILE["client_id"], MOBILE["secret"]), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_password_change_from_the_mobile_app(server):
    browser, tokens = mobile_sign_in(server)
    access, refresh = tokens["access_token"], tokens["refresh_token"]

    account = requests.get(server + "/localapi/account", headers=bearer(access), timeout=30)
    assert account.status_code == 200 and account.json()["username"] == "alice"
    assert introspect(server, access)["active"] is True

    changed = requests.post(server + "/localapi/password", headers=bearer(access), timeout=30, json={
        "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text

    # the old password no longer signs in; the new one does
    assert sign_in(requests.Session(), server, "alice", ALICE_PASSWORD).status_code == 400
    _, new_tokens = mobile_sign_in(server, NEW_PASSWORD)

    # the old refresh token is refused
    refreshed = token_request(server, MOBILE["client_id"], MOBILE["secret"], grant_type="refresh_token",
                              refresh_token=refresh)
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant", refreshed.text

    # the old access token is refused by /localapi and inactive at introspection
    for method, path in (("get", "/localapi/account"), ("post", "/localapi/password")):
        refused = requests.request(method, server + path, headers=bearer(access), json={}, timeout=30)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert introspect(server, access) == {"active": False}

    # the browser session that signed in before the change is signed out
    response, _ = authorize(browser, server, client_id=MOBILE["client_id"], redirect_uri=MOBILE["redirect_uri"],
                            scope=SCOPE, response_type="code id_token", nonce=secrets.token_urlsafe(12))
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]

    # and the tokens issued after the change work
    assert requests.get(server + "/localapi/account", headers=bearer(new_tokens["access_token"]),
                        timeout=30).status_code == 200
    assert introspect(server, new_tokens["access_token"])["active"] is True
