"""Hostile and malformed input at the protocol endpoints, and client authentication (issue 14).

Each test names one input that used to give a 500 (or be accepted against the RFCs) and asserts
the answer the RFCs ask for, and that nothing was stored.
"""

import base64
import json
from urllib.parse import quote, quote_plus, urlencode

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD
from identity.extensions import db
from identity.models import AuthorizationCode, RefreshToken
from test_localapi_support import CHEAP_ARGON2

SERVICE = ("service", "service-secret-change-me")
#: RFC 6749 section 5.2: error_description is %x20-21 / %x23-5B / %x5D-7E
SAFE = set(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
UNSAFE_VALUES = ['a"b', "a\\b", "a\x01b", "a\x7fb", "caf\u00e9", "\u2028", "a\tb", "\U0001f600"]
FORM = "application/x-www-form-urlencoded"
CLIENT_ENDPOINTS = ("/connect/token", "/connect/revocation", "/connect/introspect")


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def assert_safe_oauth_error(response, status: int, error: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error
    assert set(body.get("error_description", "")) <= SAFE, body


# --- Authorization: Basic that is not UTF-8 -------------------------------------------------------

@pytest.mark.parametrize("path", CLIENT_ENDPOINTS)
@pytest.mark.parametrize("raw", [b"\xff\xfe:\xff", b"service:\xff", b"\xc3(:x"])
def test_basic_credentials_that_are_not_utf8_are_invalid_client(client, seeded, path, raw):
    header = "Basic " + base64.b64encode(raw).decode()
    response = client.post(path, data={"grant_type": "client_credentials", "token": "x"}, headers={"Authorization": header})
    assert_safe_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("header", ["Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic "])
def test_malformed_basic_credentials_are_invalid_client(client, seeded, header):
    response = client.post("/connect/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header})
    assert_safe_oauth_error(response, 401, "invalid_client")


# --- error descriptions never echo unsafe characters ----------------------------------------------

@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_unsafe_scope_at_the_token_endpoint_is_invalid_scope(client, seeded, value):
    response = client.post("/connect/token", data={"grant_type": "client_credentials", "scope": value},
                           headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "invalid_scope")


@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_unsafe_grant_type_at_the_token_endpoint_is_unsupported(client, seeded, value):
    response = client.post("/connect/token", data={"grant_type": value}, headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize("field", ["scope", "response_type"])
@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_unsafe_values_at_authorize_redirect_an_error_with_a_safe_description(app, client, seeded, field, value):
    AuthActions(client).login()
    _, challenge = pkce_pair()
    params = {"client_id": "spa", "redirect_uri": "http://127.0.0.1:8080/callback", "response_type": "code",
              "scope": "openid", "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", field: value}
    response = client.get("/connect/authorize?" + urlencode(params))
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:8080/callback")
    got = redirect_params(location)
    assert got["error"] in ("invalid_scope", "unsupported_response_type", "invalid_request")
    assert got["state"] == "s1" and "code" not in got
    assert set(got.get("error_description", "")) <= SAFE, got
    assert count(app, AuthorizationCode) == 0


def test_oauth_error_descriptions_are_made_safe_wherever_they_are_built(app):
    from authlib.oauth2.rfc6749.errors import InvalidRequestError

    with app.app_context():
        error = InvalidRequestError('bad "value" \\ caf\u00e9 \x00 ' + "x" * 1000)
    description = dict(error.get_body())["error_description"]
    assert set(description) <= SAFE
    assert description.startswith("bad ?value? ? caf? ? x") and len(description) <= 300


# --- lone surrogates ------------------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [CHEAP_ARGON2])
@pytest.mark.parametrize("field", ["current_password", "new_password", "confirm_password"])
def test_lone_surrogate_in_a_local_api_password_is_a_400_naming_the_field(app, client, seeded, field):
    from test_localapi_support import LocalApi

    token = LocalApi(app, client).token()
    body = {"current_password": ALICE_PASSWORD, "new_password": "lantern-orchid-velvet-204",
            "confirm_password": "lantern-orchid-velvet-204"}
    body[field] = "lantern\ud800"
    response = client.post("/localapi/password", data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert field in response.get_json()["errors"]


# --- loopback redirect URIs -----------------------------------------------------------------------

@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:x/callback", "http://127.0.0.1:99999/callback", "http://127.0.0.1:-1/callback",
    "http://127.0.0.1:1234\\evil.test/callback", "http://evil@127.0.0.1:9999/callback",
    "http://evil@127.0.0.1/callback", "http://:@127.0.0.1:9999/callback", "http://127.0.0.1:/callback",
    "http://127.0.0.1:+80/callback", "http://127.0.0.1:08080/callback", "http://127.0.0.1:9999/callback/",
    "http://127.0.0.1:9999/Callback", "http://127.0.0.1:9999/callback?x=1", "http://127.0.0.1.evil.test:9999/callback",
    "http://[::1]:9999/callback", "https://127.0.0.1:9999/callback", "HTTP://127.0.0.1:9999/callback",
    "http://127.0.0.1:0/callback", "http://127.0.0.1:9999#/callback", "http://127.0.0.1:9999/callback#x",
    "http://127.0.0.1: 9999/callback", "http://127.0.0.1:٩٩٩٩/callback",
])
def test_bad_loopback_redirect_uris_get_the_error_page_and_no_code(app, client, flow_clients, redirect_uri):
    AuthActions(client).login()
    oauth = OAuthActions(client)
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", redirect_uri=redirect_uri, code_challenge=challenge,
                               code_challenge_method="S256")
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert "text/html" in response.headers["Content-Type"]
    assert count(app, AuthorizationCode) == 0


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1/callback", "http://127.0.0.1:9999/callback",
                                          "http://127.0.0.1:1/callback", "http://127.0.0.1:65535/callback"])
def test_loopback_redirect_uris_with_any_port_still_work(app, client, flow_clients, redirect_uri):
    AuthActions(client).login()
    oauth = OAuthActions(client)
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", redirect_uri=redirect_uri, code_challenge=challenge,
                               code_challenge_method="S256")
    if "/consent" in response.headers.get("Location", ""):
        response = oauth.consent(response.headers["Location"])
    assert response.status_code == 302
    assert response.headers["Location"].startswith(redirect_uri + "?")
    assert "code" in redirect_params(response.headers["Location"])


def test_the_matcher_is_exact_but_for_the_loopback_port():
    from identity.oauth2.client import redirect_uri_matches

    registered = ["http://127.0.0.1/callback", "http://[::1]:8080/cb", "https://app.example/cb"]
    assert redirect_uri_matches(registered, "http://127.0.0.1:51234/callback")
    assert redirect_uri_matches(registered, "http://[::1]/cb")
    assert redirect_uri_matches(registered, "http://[::1]:1/cb")
    assert redirect_uri_matches(registered, "https://app.example/cb")
    assert not redirect_uri_matches(registered, "https://app.example:443/cb")
    assert not redirect_uri_matches(registered, "http://u:p@127.0.0.1:51234/callback")
    assert not redirect_uri_matches(registered, "http://127.0.0.1:51234/callback?")
    assert not redirect_uri_matches(["http://evil@127.0.0.1/callback"], "http://evil@127.0.0.1:5/callback")


# --- duplicate parameters -------------------------------------------------------------------------

def test_a_repeated_grant_type_is_invalid_request(app, client, seeded):
    response = client.post("/connect/token", data=urlencode([("grant_type", "client_credentials")] * 2),
                           content_type=FORM, headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "invalid_request")
    assert "grant_type" in response.get_json()["error_description"]


def test_a_repeated_unrecognized_parameter_is_ignored(client, seeded):
    """RFC 6749 section 3.1: unrecognized parameters are ignored, repeated or not."""
    response = client.post("/connect/token", data=urlencode([("grant_type", "client_credentials"), ("x", "1"), ("x", "2")]),
                           content_type=FORM, headers={"Authorization": basic(*SERVICE)})
    assert response.status_code == 200


def test_a_parameter_in_both_query_and_body_is_repeated(client, seeded):
    response = client.post("/connect/token?scope=IdentityServerApi",
                           data={"grant_type": "client_credentials", "scope": "IdentityServerApi"},
                           headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ["/connect/revocation", "/connect/introspect"])
def test_a_repeated_token_is_invalid_request(client, seeded, path):
    response = client.post(path, data=urlencode([("token", "a"), ("token", "b")]), content_type=FORM,
                           headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "invalid_request")


def test_a_repeated_authorize_parameter_redirects_invalid_request_and_stores_nothing(app, client, seeded):
    AuthActions(client).login()
    _, challenge = pkce_pair()
    query = urlencode([("client_id", "spa"), ("redirect_uri", "http://127.0.0.1:8080/callback"), ("response_type", "code"),
                       ("scope", "openid"), ("scope", "openid profile"), ("state", "s2"),
                       ("code_challenge", challenge), ("code_challenge_method", "S256")])
    response = client.get("/connect/authorize?" + query)
    assert response.status_code == 302
    got = redirect_params(response.headers["Location"])
    assert got["error"] == "invalid_request" and "scope" in got["error_description"] and got["state"] == "s2"
    assert count(app, AuthorizationCode) == 0


@pytest.mark.parametrize("name,values", [("client_id", ["spa", "spa"]),
                                         ("redirect_uri", ["http://127.0.0.1:8080/callback", "https://evil.test/"])])
def test_a_repeated_client_id_or_redirect_uri_gets_the_error_page(app, client, seeded, name, values):
    AuthActions(client).login()
    _, challenge = pkce_pair()
    params = [("client_id", "spa"), ("redirect_uri", "http://127.0.0.1:8080/callback"), ("response_type", "code"),
              ("scope", "openid"), ("code_challenge", challenge), ("code_challenge_method", "S256")]
    params = [(k, v) for k, v in params if k != name] + [(name, v) for v in values]
    response = client.get("/connect/authorize?" + urlencode(params))
    assert response.status_code == 400 and "Location" not in response.headers
    assert count(app, AuthorizationCode) == 0


# --- one authentication method per request --------------------------------------------------------

@pytest.mark.parametrize("path", CLIENT_ENDPOINTS)
def test_basic_and_a_body_secret_together_are_invalid_request(client, seeded, path):
    response = client.post(path, data={"grant_type": "client_credentials", "token": "x", "client_id": SERVICE[0],
                                       "client_secret": SERVICE[1]}, headers={"Authorization": basic(*SERVICE)})
    assert_safe_oauth_error(response, 400, "invalid_request")


def test_basic_with_a_different_client_id_in_the_body_is_refused(client, flow_clients):
    response = client.post("/connect/token", data={"grant_type": "client_credentials", "client_id": "web"},
                           headers={"Authorization": basic(*SERVICE)})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_request", "invalid_client")


def test_each_method_alone_still_works(client, seeded):
    by_basic = client.post("/connect/token", data={"grant_type": "client_credentials"}, headers={"Authorization": basic(*SERVICE)})
    by_post = client.post("/connect/token", data={"grant_type": "client_credentials", "client_id": SERVICE[0],
                                                  "client_secret": SERVICE[1]})
    assert by_basic.status_code == 200 and by_post.status_code == 200


@pytest.mark.parametrize("encode", [quote_plus, quote])
def test_basic_credentials_are_form_decoded(app, client, seeded, encode):
    """RFC 6749 section 2.3.1: the id and secret are application/x-www-form-urlencoded before
    Base64, so a space may come as `+` (as IdentityServer decodes them) or as `%20`."""
    from identity.services.seed import apply_seed, load_seed

    secret = "p@ss word:1+2%"
    with app.app_context():
        apply_seed(load_seed(json.dumps({"clients": [{
            "client_id": "svc+x", "client_name": "Encoded", "client_secrets": [secret],
            "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]}]})))
    header = basic(encode("svc+x", safe=""), encode(secret, safe=""))

    response = client.post("/connect/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header})

    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_an_empty_secret_is_no_secret_for_a_public_client_only(client, flow_clients, auth):
    """RFC 6749 section 2.3.1: a client MAY omit an empty secret, so `client_id:` in HTTP Basic (as
    IdentityModel sends for a client without a secret, and IdentityServer accepts) or an empty
    `client_secret` is no secret: method `none`, which a public client may use (PKCE still
    applies) and a confidential one may not."""
    oauth = OAuthActions(client)
    AuthActions(client).login()
    verifier, challenge = pkce_pair()
    code = redirect_params(oauth.authorize(client_id="native", scope="openid", code_challenge=challenge,
                                           code_challenge_method="S256").headers["Location"])["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "com.example.native:/cb",
            "code_verifier": verifier}

    def empty_secret(client_id, form):
        if auth == "basic":
            return client.post("/connect/token", data=form, headers={"Authorization": basic(client_id, "")})
        return client.post("/connect/token", data={**form, "client_id": client_id, "client_secret": ""})

    public = empty_secret("native", form)
    assert public.status_code == 200, public.get_data(as_text=True)
    confidential = empty_secret("web", {"grant_type": "client_credentials"})
    assert_safe_oauth_error(confidential, 401, "invalid_client")


def test_a_wrong_basic_secret_does_not_fall_back_to_public_authentication(app, client, seeded):
    """A public client's id with a wrong Basic secret is a failed authentication, not method `none`."""
    response = client.post("/connect/revocation", data={"token": "x", "client_id": "spa"},
                           headers={"Authorization": basic("spa", "guess")})
    assert_safe_oauth_error(response, 401, "invalid_client")


# --- token_type_hint ------------------------------------------------------------------------------

def test_an_unknown_token_type_hint_is_ignored_by_introspection(client, seeded):
    issued = client.post("/connect/token", data={"grant_type": "client_credentials"}, headers={"Authorization": basic(*SERVICE)})
    token = issued.get_json()["access_token"]
    for hint in ("weird", "id_token", "", "ACCESS_TOKEN"):
        response = client.post("/connect/introspect", data={"token": token, "token_type_hint": hint},
                               headers={"Authorization": basic(*SERVICE)})
        assert response.status_code == 200, (hint, response.get_data(as_text=True))
        assert response.get_json()["active"] is True
    unknown = client.post("/connect/introspect", data={"token": "nope", "token_type_hint": "weird"},
                          headers={"Authorization": basic(*SERVICE)})
    assert unknown.status_code == 200 and unknown.get_json() == {"active": False}


# --- 204 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [CHEAP_ARGON2])
def test_204_responses_carry_no_content_type(app, client, seeded):
    from test_localapi_support import LocalApi

    token = LocalApi(app, client).token()
    body = {"current_password": ALICE_PASSWORD, "new_password": "lantern-orchid-velvet-204",
            "confirm_password": "lantern-orchid-velvet-204"}
    response = client.post("/localapi/password", data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    assert "Content-Type" not in response.headers
    assert response.get_data() == b""
    preflight = client.open("/connect/token", method="OPTIONS",
                            headers={"Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST"})
    if preflight.status_code == 204:
        assert "Content-Type" not in preflight.headers


# --- the same work for unknown and known clients --------------------------------------------------

@pytest.fixture
def argon2_calls(monkeypatch):
    """Count Argon2 verifications through the real hasher (wrapped, not replaced)."""
    from argon2 import PasswordHasher

    calls = []
    real = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


@pytest.mark.parametrize("app_config", [CHEAP_ARGON2])
@pytest.mark.parametrize("path", CLIENT_ENDPOINTS)
@pytest.mark.parametrize("how", ["basic", "post"])
def test_failed_client_authentication_does_the_same_work_for_unknown_and_known_clients(app, client, flow_clients,
                                                                                     argon2_calls, path, how):
    """One Argon2 verification whether the client exists (an Argon2 secret, a generated fast-hash
    secret, a public client, a disabled one) or not, so timing does not tell which client ids exist."""
    from identity.models import Client
    from identity.services.clients import add_client, get_client

    with app.app_context():
        add_client({"client_id": "generated", "allowed_grant_types": ["client_credentials"]}, generate_secret=True)
        add_client({"client_id": "disabled", "allowed_grant_types": ["client_credentials"],
                    "client_secrets": ["disabled-secret-0123456789"]}, generate_secret=False)
        get_client("disabled").enabled = False
        db.session.commit()
        assert get_client("generated").secret_hashes[0].startswith("sha256$")
        assert db.session.scalar(select(func.count()).select_from(Client).where(Client.client_id == "mobile")) == 1

    def attempt(client_id):
        argon2_calls.clear()
        data = {"grant_type": "client_credentials", "token": "x"}
        headers = {}
        if how == "basic":
            headers["Authorization"] = basic(client_id, "wrong-secret")
        else:
            data.update(client_id=client_id, client_secret="wrong-secret")
        response = client.post(path, data=data, headers=headers)
        assert response.get_json()["error"] == "invalid_client", response.get_data(as_text=True)
        return len(argon2_calls), response.status_code, response.get_json().get("error_description")

    unknown = attempt("no-such-client")
    assert unknown[0] == 1
    for known in ("mobile", "web", "legacy", "generated", "spa", "disabled"):
        assert attempt(known) == unknown, known
