"""Userinfo, end session, revocation, introspection and CORS."""

import base64

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import csrf_token
from identity.extensions import db
from identity.models import UserSession


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _web_tokens(oauth, scope="openid profile email offline_access IdentityServerApi"):
    response = oauth.authorize(client_id="web", scope=scope)
    code = redirect_params(response.headers["Location"])["code"]
    return oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()


def _basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


WEB = _basic("web", "web-secret-0123456789")


@pytest.mark.parametrize("scope,expected,absent", [
    ("openid", {"sub"}, {"name", "email"}),
    ("openid profile", {"sub", "name", "preferred_username"}, {"email"}),
    ("openid email", {"sub", "email", "email_verified"}, {"name"}),
])
def test_userinfo_releases_claims_by_scope(oauth, scope, expected, absent):
    token = _web_tokens(oauth, scope)["access_token"]
    for method in (oauth.client.get, oauth.client.post):
        response = method("/connect/userinfo", headers={"Authorization": "Bearer " + token})
        claims = response.get_json()
        assert response.status_code == 200
        assert expected <= set(claims) and not (absent & set(claims))


def test_userinfo_without_token_and_with_bad_token(oauth):
    missing = oauth.client.get("/connect/userinfo")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    bad = oauth.client.get("/connect/userinfo", headers={"Authorization": "Bearer abc.def.ghi"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_userinfo_without_openid_is_insufficient_scope(oauth):
    token = oauth.token("service", grant_type="client_credentials").get_json()["access_token"]
    response = oauth.client.get("/connect/userinfo", headers={"Authorization": "Bearer " + token})
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_revoke_access_token_then_introspection_is_inactive(oauth):
    token = _web_tokens(oauth)["access_token"]
    active = oauth.client.post("/connect/introspect", data={"token": token}, headers=WEB).get_json()
    assert active["active"] is True and active["client_id"] == "web" and active["scope"]
    assert oauth.client.post("/connect/revocation", data={"token": token}, headers=WEB).status_code == 200
    assert oauth.client.post("/connect/introspect", data={"token": token}, headers=WEB).get_json() == {"active": False}
    assert oauth.client.get("/connect/userinfo", headers={"Authorization": "Bearer " + token}).status_code == 401


def test_revoke_refresh_token_then_refresh_fails(oauth):
    tokens = _web_tokens(oauth)
    assert oauth.client.post("/connect/revocation", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
                             headers=WEB).status_code == 200
    assert oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400
    assert oauth.client.post("/connect/introspect", data={"token": tokens["refresh_token"]}, headers=WEB).get_json() == {"active": False}


def test_public_client_revokes_its_own_refresh_token(oauth):
    token, _ = oauth.code_flow(client_id="native", scope="openid offline_access")
    rt = token.get_json()["refresh_token"]
    response = oauth.client.post("/connect/revocation", data={"token": rt, "client_id": "native"})
    assert response.status_code == 200
    assert oauth.token("native", grant_type="refresh_token", refresh_token=rt).status_code == 400


def test_revocation_of_unknown_token_is_200(oauth):
    assert oauth.client.post("/connect/revocation", data={"token": "nonsense"}, headers=WEB).status_code == 200


def test_revocation_requires_client_authentication(oauth):
    response = oauth.client.post("/connect/revocation", data={"token": "x"}, headers=_basic("web", "wrong"))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_introspection_of_another_clients_token_is_inactive(oauth):
    token = oauth.token("service", grant_type="client_credentials").get_json()["access_token"]
    assert oauth.client.post("/connect/introspect", data={"token": token}, headers=WEB).get_json() == {"active": False}


def test_introspection_needs_a_confidential_client(oauth):
    response = oauth.client.post("/connect/introspect", data={"token": "x", "client_id": "native"})
    assert response.status_code == 401


def test_introspection_of_garbage_is_inactive(oauth):
    for token in ("garbage", "a.b.c", "x" * 9000):
        assert oauth.client.post("/connect/introspect", data={"token": token}, headers=WEB).get_json() == {"active": False}


def _id_token(oauth):
    return _web_tokens(oauth)["id_token"]


def test_endsession_with_hint_and_registered_uri_signs_out_and_echoes_state(oauth, app):
    hint = _id_token(oauth)
    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s-9"})
    assert response.status_code == 302 and response.headers["Location"] == "https://web.example.com/bye?state=s-9"
    assert oauth.client.get("/diagnostics").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession)).revoked_at is not None


def test_endsession_refuses_unregistered_post_logout_uri(oauth):
    hint = _id_token(oauth)
    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example.com/"})
    assert response.status_code == 400 and "Location" not in response.headers
    assert oauth.client.get("/diagnostics").status_code == 200


def test_endsession_refuses_a_forged_hint(oauth):
    response = oauth.client.get("/connect/endsession", query_string={"id_token_hint": "eyJhbGciOiJub25lIn0.e30."})
    assert response.status_code == 400


def test_endsession_refuses_a_logout_token_as_the_hint(oauth, app):
    """A back-channel logout token is signed with the ID tokens' key and names the user and the
    client as an ID token does, but it is not one (Back-Channel Logout 1.0 section 4.1, typ
    logout+jwt): as a hint it must not sign the user out without asking."""
    from identity.config.issuer import issuer
    from identity.services.logout_delivery import logout_token

    subject = oauth.client.get("/connect/userinfo", headers={
        "Authorization": "Bearer " + _web_tokens(oauth, scope="openid")["access_token"]}).get_json()["sub"]
    with app.test_request_context(base_url="https://localhost"):
        token = logout_token(iss=issuer(), client_id="web", jti="j-1", subject=subject, session_id=None)

    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": token, "post_logout_redirect_uri": "https://web.example.com/bye"})

    assert response.status_code == 400 and "Location" not in response.headers
    assert oauth.client.get("/diagnostics").status_code == 200


def test_endsession_sends_nobody_back_to_a_disabled_client(oauth, app):
    """A disabled client's ID token still names the person, who is signed out, but the answer
    goes to this server's signed-out page, never to the disabled client's return address."""
    from identity.services.clients import set_client_enabled

    hint = _id_token(oauth)
    with app.app_context():
        assert set_client_enabled("web", False)
    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s-9"})
    assert response.status_code == 200 and "Location" not in response.headers
    assert "web.example.com" not in response.get_data(as_text=True)
    assert oauth.client.get("/diagnostics").status_code == 302  # signed out all the same
    with app.app_context():
        assert db.session.scalar(select(UserSession)).revoked_at is not None


def test_endsession_without_hint_asks_for_confirmation(oauth):
    page = oauth.client.get("/connect/endsession")
    assert page.status_code == 200 and oauth.client.get("/diagnostics").status_code == 200
    done = oauth.client.post("/connect/endsession", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200 and oauth.client.get("/diagnostics").status_code == 302


@pytest.mark.parametrize("query,body", [
    ({"state": "a", "client_id": "web"}, {"state": "b"}),  # once in the query, once in the body
    ({"client_id": "web", "state": "a"}, {"client_id": "spa"}),
])
def test_endsession_refuses_a_repeated_parameter_and_signs_nobody_out(oauth, query, body):
    """RFC 6749 3.1 and docs/endpoints.md: a recognized parameter given twice is invalid_request at
    every endpoint. End session took the first of two `state`s or `client_id`s and went on."""
    page = oauth.client.get("/connect/endsession")
    body = body | {"csrf_token": csrf_token(page.get_data(as_text=True))}
    response = oauth.client.post("/connect/endsession", query_string=query, data=body)
    assert response.status_code == 400 and "must not be repeated" in response.get_data(as_text=True)
    assert oauth.client.get("/diagnostics").status_code == 200  # still signed in


def test_endsession_confirmation_posts_each_parameter_once(oauth):
    """The confirmation page's form posts the request's parameters in its body, to the bare
    endpoint: not once more beside the query they came in."""
    query = {"client_id": "web", "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s1"}
    page = oauth.client.get("/connect/endsession", query_string=query)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'action="/connect/endsession"' in html
    done = oauth.client.post("/connect/endsession", data=query | {"csrf_token": csrf_token(html)})
    assert done.status_code == 303 and done.headers["Location"] == "https://web.example.com/bye?state=s1"
    assert oauth.client.get("/diagnostics").status_code == 302


def test_endsession_post_logout_uri_needs_a_client(oauth):
    response = oauth.client.get("/connect/endsession", query_string={"post_logout_redirect_uri": "https://web.example.com/bye"})
    assert response.status_code == 400


def test_cors_preflight_and_response_only_for_registered_origins(oauth):
    pre = oauth.client.options("/connect/token", headers={"Origin": "https://web.example.com", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://web.example.com"
    other = oauth.client.options("/connect/token", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    actual = oauth.client.get("/.well-known/openid-configuration", headers={"Origin": "https://web.example.com"})
    assert actual.headers["Access-Control-Allow-Origin"] == "https://web.example.com"
    not_cors = oauth.client.get("/account/login", headers={"Origin": "https://web.example.com"})
    assert "Access-Control-Allow-Origin" not in not_cors.headers


def test_a_disabled_clients_origins_get_no_cors_answer(oauth, runner):
    """`clients disable` refuses the client everywhere, but its origins still got CORS answers: a
    page of that origin could still read the token endpoint's and the local API's responses."""
    assert runner.invoke(args=["clients", "disable", "web"]).exit_code == 0
    pre = oauth.client.options("/connect/token", headers={"Origin": "https://web.example.com",
                                                          "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert runner.invoke(args=["clients", "enable", "web"]).exit_code == 0
    again = oauth.client.options("/connect/token", headers={"Origin": "https://web.example.com",
                                                            "Access-Control-Request-Method": "POST"})
    assert again.headers["Access-Control-Allow-Origin"] == "https://web.example.com"


@pytest.mark.parametrize("method, path", [("GET", "/localapi/account"), ("POST", "/localapi/password"),
                                          ("PUT", "/localapi/email"), ("DELETE", "/localapi/sessions"),
                                          ("DELETE", "/localapi/sessions/abc")])
def test_cors_preflight_allows_each_local_api_method(oauth, method, path):
    """A browser app calls every route of the local API, not only its GETs and POSTs."""
    pre = oauth.client.options(path, headers={"Origin": "https://web.example.com", "Access-Control-Request-Method": method,
                                              "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://web.example.com"
    assert method in [m.strip() for m in pre.headers["Access-Control-Allow-Methods"].split(",")]
    token = oauth.client.options("/connect/token", headers={"Origin": "https://web.example.com",
                                                            "Access-Control-Request-Method": "DELETE"})
    assert token.headers["Access-Control-Allow-Methods"] == "GET, POST"  # the protocol endpoints take no more


def test_cors_responses_vary_on_origin_once_beside_their_own_vary(oauth):
    pre = oauth.client.options("/connect/token", headers={"Origin": "https://web.example.com", "Access-Control-Request-Method": "POST"})
    assert pre.headers.getlist("Vary") == ["Origin"]
    # a CORS GET the app answers with its own Vary (the session was read): both, Origin once
    actual = oauth.client.get("/.well-known/openid-configuration", headers={"Origin": "https://web.example.com"})
    values = [v.strip().lower() for header in actual.headers.getlist("Vary") for v in header.split(",")]
    assert values.count("origin") == 1
    assert len(actual.headers.getlist("Vary")) == 1
