"""docs/endpoints.md, docs/logout.md and docs/demo-clients.md read as a contract, sentence by sentence."""

import pytest

from actions import AuthActions, OAuthActions, redirect_params, web_access_token


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


# --- userinfo: one method of sending the token ------------------------------------------------------


@pytest.mark.database_independent
def test_userinfo_refuses_a_token_sent_in_the_query_beside_the_header_or_the_body(oauth):
    """endpoints.md: the token "in the Authorization header, or in a form POST's access_token, never
    both (invalid_request)", and a parameter given once in the query and once in the body is
    invalid_request at every endpoint. RFC 6750 section 3.1: a request that "uses more than one
    method for including an access token" is invalid_request. The query's token was ignored and
    the other one answered, so a client that sent two (perhaps different users') got claims."""
    token = web_access_token(oauth)
    in_body = oauth.client.post("/connect/userinfo?access_token=" + token, data={"access_token": token})
    assert in_body.status_code == 400, (in_body.status_code, in_body.get_data(as_text=True))
    assert 'error="invalid_request"' in in_body.headers["WWW-Authenticate"]
    assert in_body.get_json()["error"] == "invalid_request"
    with_header = oauth.client.get("/connect/userinfo?access_token=" + token, headers={"Authorization": "Bearer " + token})
    assert with_header.status_code == 400, (with_header.status_code, with_header.get_data(as_text=True))
    assert 'error="invalid_request"' in with_header.headers["WWW-Authenticate"]
    # the query alone is still no method of this server's: a bare challenge (RFC 6750 section 3.1)
    alone = oauth.client.get("/connect/userinfo?access_token=" + token)
    assert alone.status_code == 401 and alone.headers["WWW-Authenticate"] == "Bearer"
    # sent without a value, the query's is as if omitted (RFC 6749 section 3.1)
    empty = oauth.client.get("/connect/userinfo?access_token=", headers={"Authorization": "Bearer " + token})
    assert empty.status_code == 200 and empty.get_json()["preferred_username"] == "alice"


# --- a scope token named twice ---------------------------------------------------------------------


def _claims(token: str) -> dict:
    import jwt
    return jwt.decode(token, options={"verify_signature": False})


def test_a_scope_named_twice_is_granted_once(oauth):
    """endpoints.md: `scope` is scope tokens separated by single spaces, and access tokens are
    RFC 9068 JWTs whose `aud` names each API scope. RFC 6749 section 3.3: the tokens are a list
    of access ranges, order-independent: one named twice is the same range, granted once (as
    IdentityServer4 does). It was granted twice: `scope` "IdentityServerApi IdentityServerApi" and
    `aud` ["IdentityServerApi", "IdentityServerApi"], in the token, the response and introspection."""
    service = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi IdentityServerApi").get_json()
    assert service["scope"] == "IdentityServerApi", service
    assert _claims(service["access_token"])["aud"] == ["IdentityServerApi"]
    assert _claims(service["access_token"])["scope"] == "IdentityServerApi"

    code = redirect_params(oauth.authorize(client_id="web", scope="openid profile profile openid").headers["Location"])["code"]
    web = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    assert web["scope"] == "openid profile", web
    assert _claims(web["access_token"])["scope"] == "openid profile"

    legacy = oauth.token("legacy", grant_type="password", username="alice", password="tulip-quartz-harbor-917",
                         scope="openid IdentityServerApi IdentityServerApi offline_access").get_json()
    assert legacy["scope"] == "openid IdentityServerApi offline_access", legacy
    refreshed = oauth.token("legacy", grant_type="refresh_token", refresh_token=legacy["refresh_token"],
                            scope="IdentityServerApi IdentityServerApi").get_json()
    assert refreshed["scope"] == "IdentityServerApi", refreshed
    assert _claims(refreshed["access_token"])["aud"] == ["IdentityServerApi"]

    implicit = redirect_params(oauth.authorize(client_id="implicit", response_type="id_token token", nonce="n-1",
                                               scope="openid email email").headers["Location"])
    assert implicit["scope"] == "openid email", implicit
