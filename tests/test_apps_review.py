"""Regression tests from a review of the server as client apps see it: a mobile app (AppAuth), a
browser SPA (oidc-client-ts) and what they read from the token, introspection and local API answers."""

import base64
import time

from test_localapi_support import CHEAP_ARGON2, api, bearer  # noqa: F401  (fixture)

MOBILE_BASIC = {"Authorization": "Basic " + base64.b64encode(b"mobile:s3cret").decode()}


def test_introspection_calls_an_access_token_past_its_exp_inactive(api):
    """RFC 7662 section 2.2: `active` is true only for a token within its time window. The bearer
    check allows JWT_LEEWAY_SECONDS of clock skew past `exp`; introspection must not answer
    `active: true` beside an `exp` already in the past, which the resource server then holds."""
    now = int(time.time())
    expired = api.forge({"exp": now - 5, "jti": "past-exp"})
    response = api.client.post("/connect/introspect", data={"token": expired}, headers=MOBILE_BASIC)
    assert response.status_code == 200
    assert response.get_json() == {"active": False}
    not_yet = api.forge({"nbf": now + 20, "jti": "before-nbf"})
    assert api.client.post("/connect/introspect", data={"token": not_yet},
                           headers=MOBILE_BASIC).get_json() == {"active": False}
    live = api.forge({"jti": "live"})
    assert api.client.post("/connect/introspect", data={"token": live}, headers=MOBILE_BASIC).get_json()["active"] is True


def _challenge_params(value: str) -> dict:
    """The auth-params of one challenge (RFC 7235 section 2.1), quoted strings without escapes."""
    scheme, _, rest = value.partition(" ")
    params = {}
    for part in rest.split(", "):
        name, _, quoted = part.partition("=")
        params[name.strip().lower()] = quoted.strip('"')
    return {"scheme": scheme, **params}


def test_invalid_client_challenge_is_a_basic_challenge_with_its_realm(live_server, seeded):
    """RFC 6749 section 5.2: a client that tried HTTP Basic gets 401 and a WWW-Authenticate for
    Basic; RFC 7617 section 2 makes `realm` REQUIRED in that challenge. Over real HTTP, as an app's
    HTTP stack reads it."""
    import requests

    for path, form in (("/connect/token", {"grant_type": "client_credentials"}), ("/connect/revocation", {"token": "x"}),
                       ("/connect/introspect", {"token": "x"})):
        response = requests.post(live_server.url + path, data=form, auth=("service", "wrong"), timeout=30)
        assert response.status_code == 401, path
        params = _challenge_params(response.headers["WWW-Authenticate"])
        assert params["scheme"] == "Basic" and params["error"] == "invalid_client", params
        assert params.get("realm"), response.headers["WWW-Authenticate"]


BEARER_ERRORS = {"invalid_request", "invalid_token", "insufficient_scope"}  # RFC 6750 section 3.1


def test_userinfo_without_a_token_answers_no_error_code_of_authlibs_own(client, seeded):
    """A protocol endpoint's errors are the OAuth ones; userinfo's body said
    `"error": "missing_authorization"`, Authlib's own name, which no OAuth registry has. RFC 6750
    section 3.1 asks for no error code when the request carries no token (as the bare `Bearer`
    challenge already says), so the body has none either; a bad token is still `invalid_token`."""
    missing = client.get("/connect/userinfo", headers={"Origin": "http://127.0.0.1:8080"})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    body = missing.get_json()
    assert "error" not in body, body
    assert body["error_description"]
    bad = client.get("/connect/userinfo", headers={"Authorization": "Bearer abc.def.ghi"})
    assert bad.status_code == 401 and bad.get_json()["error"] in BEARER_ERRORS


import pytest  # noqa: E402

from actions import AuthActions, OAuthActions, redirect_params  # noqa: E402


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "GRANT_TYPES_ENABLED": [
    "authorization_code", "hybrid", "implicit", "client_credentials", "password"]}])
def test_offline_access_in_allowed_scopes_is_not_granted_while_the_refresh_grant_is_off(client, seeded, app_config):
    """mobile-pkce lists offline_access in its allowed_scopes (as the demo seed does). With the
    refresh_token grant off, discovery leaves the scope out and no refresh token can be issued, so
    the scope must be refused as for a client without it, not granted with no refresh token."""
    assert "offline_access" not in client.get("/.well-known/openid-configuration").get_json()["scopes_supported"]
    AuthActions(client).login()
    oauth = OAuthActions(client)
    response = oauth.authorize(client_id="mobile-pkce", scope="openid offline_access",
                               redirect_uri="com.example.app:/callback", code_challenge="E" * 43,
                               code_challenge_method="S256")
    assert redirect_params(response.headers["Location"]).get("error") == "invalid_scope", response.headers["Location"]
