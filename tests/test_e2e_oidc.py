"""End to end against a running server with a real OAuth client (Authlib's OAuth2Session over requests),
validating every JWT independently with PyJWT against the published JWKS."""

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.security import generate_token

from conftest import ALICE_PASSWORD, csrf_token


@pytest.fixture
def server(live_server, flow_clients):
    return live_server


def browser_sign_in(base: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "/account/login")
    response = browser.post(base + "/account/login", data={"csrf_token": csrf_token(page.text), "username": "alice",
                                                            "password": ALICE_PASSWORD}, allow_redirects=False)
    assert response.status_code == 302
    return browser


def follow_to_client(browser: requests.Session, url: str, client_prefix: str) -> dict:
    """Follow redirects inside the server until one leaves for the client; return its parameters."""
    for _ in range(10):
        response = browser.get(url, allow_redirects=False)
        assert response.status_code == 302, response.text[:500]
        url = response.headers["Location"]
        if url.startswith(client_prefix):
            parts = urlsplit(url)
            return {k: v[0] for k, v in parse_qs(parts.fragment or parts.query).items()}
        if url.startswith("/"):
            url = browser_base(response) + url
    raise AssertionError("never reached the client")


def browser_base(response) -> str:
    parts = urlsplit(response.url)
    return f"{parts.scheme}://{parts.netloc}"


def signing_key(base: str, token: str):
    jwks = requests.get(base + "/.well-known/openid-configuration/jwks").json()
    kid = pyjwt.get_unverified_header(token)["kid"]
    return pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))


def verify_id_token(base, token, client_id, nonce=None):
    claims = pyjwt.decode(token, signing_key(base, token), algorithms=["RS256"], audience=client_id, issuer=base)
    assert {"iss", "sub", "aud", "exp", "iat", "auth_time", "sid"} <= set(claims)
    assert pyjwt.get_unverified_header(token)["alg"] == "RS256"
    if nonce:
        assert claims["nonce"] == nonce
    return claims


def verify_access_token(base, token):
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    claims = pyjwt.decode(token, signing_key(base, token), algorithms=["RS256", "ES256"], issuer=base,
                          options={"verify_aud": False})
    assert {"iss", "aud", "client_id", "scope", "exp", "iat", "jti"} <= set(claims)
    return claims


def half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_discovery_points_at_this_server(server):
    doc = requests.get(server.url + "/.well-known/openid-configuration").json()
    assert doc["issuer"] == server.url and doc["token_endpoint"] == server.url + "/connect/token"


def test_code_flow_with_pkce_and_refresh_rotation(server):
    base = server.url
    browser = browser_sign_in(base)
    oauth = OAuth2Session("native", redirect_uri="http://127.0.0.1:50000/callback", scope="openid profile offline_access",
                          code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(48)
    nonce = generate_token(12)
    url, state = oauth.create_authorization_url(base + "/connect/authorize", code_verifier=verifier, nonce=nonce)
    params = follow_to_client(browser, url, "http://127.0.0.1:50000/callback")
    assert params["state"] == state
    token = oauth.fetch_token(base + "/connect/token", code=params["code"], code_verifier=verifier)
    id_claims = verify_id_token(base, token["id_token"], "native", nonce=nonce)
    assert id_claims["at_hash"] == half_hash(token["access_token"])
    access = verify_access_token(base, token["access_token"])
    assert access["sub"] == id_claims["sub"] and access["client_id"] == "native"
    userinfo = requests.get(base + "/connect/userinfo", headers={"Authorization": "Bearer " + token["access_token"]}).json()
    assert userinfo["sub"] == id_claims["sub"] and userinfo["preferred_username"] == "alice"

    first_refresh = token["refresh_token"]
    rotated = oauth.refresh_token(base + "/connect/token", refresh_token=first_refresh)
    assert rotated["refresh_token"] != first_refresh
    reuse = requests.post(base + "/connect/token", data={"grant_type": "refresh_token", "refresh_token": first_refresh,
                                                         "client_id": "native"})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    family_gone = requests.post(base + "/connect/token", data={"grant_type": "refresh_token",
                                                               "refresh_token": rotated["refresh_token"], "client_id": "native"})
    assert family_gone.status_code == 400


@pytest.mark.parametrize("response_type", ["code id_token", "code token", "code id_token token"])
def test_hybrid_flows_with_c_hash_and_at_hash(server, response_type):
    base = server.url
    browser = browser_sign_in(base)
    oauth = OAuth2Session("mobile", "s3cret", redirect_uri="com.example.app:/callback",
                          scope="openid profile IdentityServerApi offline_access", code_challenge_method="S256")
    verifier, nonce = generate_token(48), generate_token(12)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    # Authlib's client adds PKCE only for response_type=code, so the hybrid request carries it explicitly
    url, state = oauth.create_authorization_url(base + "/connect/authorize", response_type=response_type, nonce=nonce,
                                                code_challenge=challenge, code_challenge_method="S256")
    params = follow_to_client(browser, url, "com.example.app:/callback")
    assert params["state"] == state and "code" in params
    if "id_token" in response_type:
        claims = verify_id_token(base, params["id_token"], "mobile", nonce=nonce)
        assert claims["c_hash"] == half_hash(params["code"])
        if "token" in response_type.split():
            assert claims["at_hash"] == half_hash(params["access_token"])
    if "token" in response_type.split():
        assert "IdentityServerApi" in verify_access_token(base, params["access_token"])["scope"]
    token = oauth.fetch_token(base + "/connect/token", code=params["code"], code_verifier=verifier)
    verify_id_token(base, token["id_token"], "mobile", nonce=nonce)
    assert "refresh_token" in token


@pytest.mark.parametrize("response_type", ["id_token", "id_token token"])
def test_implicit_flows(server, response_type):
    base = server.url
    browser = browser_sign_in(base)
    oauth = OAuth2Session("implicit", redirect_uri="https://implicit.example.com/cb", scope="openid profile email")
    nonce = generate_token(12)
    url, state = oauth.create_authorization_url(base + "/connect/authorize", response_type=response_type, nonce=nonce)
    params = follow_to_client(browser, url, "https://implicit.example.com/cb")
    claims = verify_id_token(base, params["id_token"], "implicit", nonce=nonce)
    if response_type == "id_token":
        assert claims["preferred_username"] == "alice" and claims["email"] == "alice@example.com"
        assert "access_token" not in params
    else:
        assert claims["at_hash"] == half_hash(params["access_token"])
        assert "preferred_username" not in claims  # fetched from userinfo with the access token


def test_client_credentials_with_a_real_client(server):
    oauth = OAuth2Session("service", "service-secret-change-me", scope="IdentityServerApi")
    token = oauth.fetch_token(server.url + "/connect/token", grant_type="client_credentials")
    claims = verify_access_token(server.url, token["access_token"])
    assert claims["sub"] == "service" and "pwv" not in claims and claims["scope"] == "IdentityServerApi"
    introspection = requests.post(server.url + "/connect/introspect", data={"token": token["access_token"]},
                                  auth=("service", "service-secret-change-me")).json()
    assert introspection["active"] is True and introspection["client_id"] == "service"


def test_form_post_page_carries_the_code(server):
    browser = browser_sign_in(server.url)
    oauth = OAuth2Session("web", "web-secret-0123456789", redirect_uri="https://web.example.com/cb", scope="openid")
    url, state = oauth.create_authorization_url(server.url + "/connect/authorize", response_mode="form_post")
    page = browser.get(url)
    assert page.status_code == 200
    assert re.search(r'<form[^>]+action="https://web.example.com/cb"', page.text)
    assert f'value="{state}"' in page.text
