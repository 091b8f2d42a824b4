"""The server against RFC 9700 (OAuth 2.0 Security Best Current Practice), attack by attack."""

import re
from urllib.parse import urlencode

import pytest

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params

ISSUER = "https://localhost"  # the test client's host (development: the issuer is the request's)


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


# --- mix-up (RFC 9700 section 4.4.2, RFC 9207): the issuer in every authorization response ---------


def test_discovery_says_the_authorization_response_carries_iss(client, flow_clients):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["authorization_response_iss_parameter_supported"] is True


@pytest.mark.parametrize("extra", [
    {"client_id": "web"},  # code, in the query
    {"client_id": "web", "response_mode": "fragment"},
    {"client_id": "mobile", "response_type": "code id_token", "nonce": "n-1"},  # hybrid, in the fragment
    {"client_id": "web", "scope": "openid admin"},  # an error (invalid_scope) to the redirect URI
    {"client_id": "web", "prompt": "none", "max_age": "0"},  # login_required
])
def test_every_authorization_response_names_the_issuer(oauth, extra):
    verifier, challenge = pkce_pair()
    response = oauth.authorize(code_challenge=challenge, code_challenge_method="S256", state="st-1", **extra)
    assert response.status_code == 302, response.get_data(as_text=True)
    params = redirect_params(response.headers["Location"])
    assert params["state"] == "st-1"
    assert params.get("iss") == ISSUER, params


def test_a_form_post_response_names_the_issuer(oauth):
    response = oauth.authorize(client_id="web", response_mode="form_post", state="st-2")
    html = response.get_data(as_text=True)
    assert re.search(r'name="iss" value="https://localhost"', html), html


def test_a_refused_consent_names_the_issuer(client, flow_clients):
    AuthActions(client).login()
    oauth = OAuthActions(client)
    response = oauth.authorize(client_id="spa", code_challenge=pkce_pair()[1], code_challenge_method="S256", state="s3")
    assert "/consent" in response.headers["Location"]
    denied = oauth.consent(response.headers["Location"], decision="deny")
    params = redirect_params(denied.headers["Location"])
    assert params["error"] == "access_denied" and params.get("iss") == ISSUER, params


def test_the_code_with_iss_still_redeems(oauth):
    token, params = oauth.code_flow(client_id="spa", consent=True)
    assert params["iss"] == ISSUER
    assert token.status_code == 200, token.get_json()


# --- 307/302 after a POST (RFC 9700 section 4.12): the answer to the client is a 303 ------------------


def _authorize_url(oauth, **extra):
    return "/connect/authorize?" + urlencode(oauth.authorize_params(**extra))


def test_a_sign_in_answered_at_the_client_is_a_303(client, flow_clients):
    """The sign-in POST (user name and password in its body) is answered with the redirect to the
    client itself: a 302 that a user agent repeats as a POST sends the password to the client."""
    oauth = OAuthActions(client)
    login = AuthActions(client).login(return_url=_authorize_url(oauth, client_id="web"))
    assert login.status_code == 303, login.status_code
    assert login.headers["Location"].startswith("https://web.example.com/cb?code=")


def test_a_consent_answered_at_the_client_is_a_303(oauth):
    response = oauth.authorize(client_id="spa", code_challenge=pkce_pair()[1], code_challenge_method="S256")
    allowed = oauth.consent(response.headers["Location"])
    assert allowed.status_code == 303, allowed.status_code
    assert "code=" in allowed.headers["Location"]


def test_a_posted_authorization_request_is_answered_with_a_303_and_a_get_with_a_302(oauth):
    params = oauth.authorize_params(client_id="web")
    posted = oauth.client.post("/connect/authorize", data=params)
    assert posted.status_code == 303, posted.status_code
    assert oauth.client.get("/connect/authorize?" + urlencode(oauth.authorize_params(client_id="web"))).status_code == 302


# --- no authorization response over plain http (RFC 9700 section 2.6) --------------------------------


def test_an_http_redirect_uri_stored_before_production_refused_it_is_not_answered(app, client, flow_clients):
    """A client registered with http://intranet.example.com/cb while the seed still let a confidential
    client have one (or in development) is not sent its code in the clear once in production."""
    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed('{"clients": [{"client_id": "intranet", "client_secrets": ["intranet-secret-0123456789"],'
                             '"allowed_grant_types": ["authorization_code"], "allowed_scopes": ["openid"],'
                             '"redirect_uris": ["http://intranet.example.com/cb", "https://intranet.example.com/cb"]}]}'))
    app.config["ENVIRONMENT"] = "production"
    AuthActions(client).login()
    plain = client.get("/connect/authorize?" + urlencode({
        "client_id": "intranet", "response_type": "code", "scope": "openid", "state": "s",
        "code_challenge": pkce_pair()[1], "code_challenge_method": "S256", "redirect_uri": "http://intranet.example.com/cb"}))
    assert plain.status_code == 400 and "Location" not in plain.headers, plain.headers.get("Location")
    tls = client.get("/connect/authorize?" + urlencode({
        "client_id": "intranet", "response_type": "code", "scope": "openid", "state": "s",
        "code_challenge": pkce_pair()[1], "code_challenge_method": "S256", "redirect_uri": "https://intranet.example.com/cb"}))
    assert tls.status_code == 302 and "code=" in tls.headers["Location"]
    native = OAuthActions(client).authorize(client_id="native", redirect_uri="http://127.0.0.1:4711/callback",
                                            code_challenge=pkce_pair()[1], code_challenge_method="S256")
    assert native.status_code == 302 and "code=" in native.headers["Location"]  # loopback: RFC 8252
