"""An app team moving from IdentityServer4: the .NET (Microsoft.AspNetCore.Authentication.OpenIdConnect,
IdentityModel) and JavaScript (oidc-client-js) clients it used, against what the docs promise
"in the spirit of IdentityServer4"."""

import base64
import json

from actions import OAuthActions
from conftest import ALICE_PASSWORD


def claims(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_the_password_grant_without_scope_issues_the_clients_scopes(client, flow_clients):
    """IdentityServer4's token endpoint, given no `scope`, issues every scope the client is
    allowed (offline_access too when the client allows offline access), for the password grant
    as for client credentials (TokenRequestValidator.ValidateRequestedScopesAsync); IdentityModel's
    RequestPasswordTokenAsync sends none unless told. Here client credentials did, but the
    password grant issued a token of `"scope": ""` (no scope-token at all, RFC 6749 section 3.3),
    which userinfo and the local API refuse, and no refresh token."""
    response = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    granted = body["scope"].split()
    assert sorted(granted) == sorted(["openid", "profile", "IdentityServerApi", "offline_access"]), body
    assert claims(body["access_token"])["scope"] == body["scope"]
    assert "refresh_token" in body
    account = client.get("/localapi/account", headers={"Authorization": "Bearer " + body["access_token"]})
    assert account.status_code == 200
    userinfo = client.get("/connect/userinfo", headers={"Authorization": "Bearer " + body["access_token"]})
    assert userinfo.get_json()["preferred_username"] == "alice"
    refreshed = OAuthActions(client).token("legacy", grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.get_json()["scope"].split() == granted


def test_an_authorization_request_without_scope_is_invalid_scope(client, flow_clients):
    """IdentityServer4 answers an authorization request without `scope` with `invalid_scope`
    (AuthorizeRequestValidator: "scope is missing"), one of the two answers RFC 6749 section 3.3
    allows. Here the code flow issued a code, and its token came with `"scope": ""`, no scope-token
    at all (section 3.3's grammar), an access token no API and no userinfo takes."""
    from actions import AuthActions, redirect_params

    AuthActions(client).login()
    response = OAuthActions(client).authorize(client_id="web", scope=None)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("https://web.example.com/cb?"), location
    assert redirect_params(location).get("error") == "invalid_scope", location
    assert "code" not in redirect_params(location)


def test_a_token_request_without_scope_for_a_client_of_no_grantable_scope_is_invalid_scope(client, app, seeded):
    """Given no `scope`, IdentityServer4 defaults to the client's scopes, and when that leaves none
    (a client_credentials client allowed only identity scopes, or none at all) it answers
    `invalid_scope` ("No scopes found in request"). Here both grants issued a token of
    `"scope": ""`, no scope-token at all (RFC 6749 section 3.3), and the password grant recorded
    a sign-in for it."""
    from identity.services.seed import apply_seed, load_seed

    secret = "abcdefghijklmnop-0123"
    seed = {"clients": [
        {"client_id": "idonly", "client_secrets": [secret], "allowed_grant_types": ["client_credentials", "password"],
         "allowed_scopes": ["openid"]},
        {"client_id": "noscope", "client_secrets": [secret], "allowed_grant_types": ["password"], "allowed_scopes": []},
    ]}
    with app.app_context():
        apply_seed(load_seed(json.dumps(seed)))
    asked = [("idonly", {"grant_type": "client_credentials"}),
             ("noscope", {"grant_type": "password", "username": "alice", "password": ALICE_PASSWORD})]
    for client_id, form in asked:
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        response = client.post("/connect/token", data=form, headers={"Authorization": "Basic " + basic})
        assert (response.status_code, response.get_json().get("error")) == (400, "invalid_scope"), \
            (client_id, form["grant_type"], response.get_json())
