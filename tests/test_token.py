"""The token endpoint: code redemption, refresh rotation, client credentials, password, client authentication."""

import base64
import hashlib

import jwt as pyjwt
import pytest
from sqlalchemy import func, select, update

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, BOB_PASSWORD
from identity.extensions import db
from identity.models import AuthorizationCode, RefreshToken, RevokedAccessToken, User


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def jwks_client_key(client, token):
    keys = client.get("/.well-known/openid-configuration/jwks").get_json()["keys"]
    kid = pyjwt.get_unverified_header(token)["kid"]
    return pyjwt.PyJWK(next(k for k in keys if k["kid"] == kid))


def decode(client, token, audience=None):
    key = jwks_client_key(client, token)
    options = {"verify_aud": audience is not None}
    return pyjwt.decode(token, key, algorithms=["RS256", "ES256"], audience=audience, issuer="https://localhost", options=options)


def _code(oauth, client_id="web", **extra):
    response = oauth.authorize(client_id=client_id, scope=extra.pop("scope", "openid profile offline_access"), **extra)
    return redirect_params(response.headers["Location"])["code"]


def _count(app, model, **where):
    with app.app_context():
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return db.session.scalar(stmt)


def test_code_redeems_once_for_jwt_access_token_id_token_and_refresh_token(oauth, client):
    code = _code(oauth)
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    body = response.get_json()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["kid"]
    claims = decode(client, body["access_token"])
    assert claims["client_id"] == "web" and claims["scope"] == "openid profile offline_access"
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "auth_time"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 600
    id_token = decode(client, body["id_token"], audience="web")
    assert id_token["sub"] == claims["sub"] and "sid" in id_token and "at_hash" in id_token
    assert "refresh_token" in body


def test_second_use_of_a_code_fails_and_revokes_what_the_first_issued(oauth, client, app):
    code = _code(oauth)
    first = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    again = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    claims = decode(client, first["access_token"])
    assert _count(app, RevokedAccessToken, jti=claims["jti"]) == 1
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 400
    assert client.get("/connect/userinfo", headers={"Authorization": "Bearer " + first["access_token"]}).status_code == 401


def test_redemption_consumes_the_code_with_the_tokens_it_produced(oauth, client, app):
    from identity.models import AuthorizationCode

    code = _code(oauth, scope="openid profile offline_access")
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert response.status_code == 200
    jti = decode(client, response.get_json()["access_token"])["jti"]
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode))
        refresh = db.session.scalar(select(RefreshToken))
        assert row.consumed_at is not None and row.issued_jti == jti
        assert (refresh.family_id, refresh.access_token_jti, refresh.session_id) == (row.family_id, jti, row.session_id)
        assert refresh.consumed_at is None and refresh.revoked_at is None


def test_refused_redemption_burns_the_code(oauth):
    """RFC 9700 2.1.1: a failed attempt consumes the code; the right verifier then gets nothing."""
    verifier, challenge = pkce_pair()
    code = _code(oauth, client_id="native", code_challenge=challenge, code_challenge_method="S256", scope="openid")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "com.example.native:/cb"}
    assert oauth.token("native", **form, code_verifier="x" * 50).get_json()["error"] == "invalid_grant"
    assert oauth.token("native", **form, code_verifier=verifier).get_json()["error"] == "invalid_grant"


def test_code_of_another_client_is_invalid_grant(oauth):
    code = _code(oauth, client_id="native", code_challenge=pkce_pair()[1], code_challenge_method="S256", scope="openid")
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert response.get_json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_the_authorization_request(oauth):
    code = _code(oauth)
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/other")
    assert response.get_json()["error"] == "invalid_grant"


def test_expired_code_is_invalid_grant(oauth, app):
    from identity.models import AuthorizationCode

    code = _code(oauth)
    with app.app_context():
        db.session.execute(AuthorizationCode.__table__.update().values(expires_at=1))
        db.session.commit()
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert response.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier,error", [(None, "invalid_request"), ("x" * 50, "invalid_grant")])
def test_pkce_verifier_is_checked(oauth, verifier, error):
    _, challenge = pkce_pair()
    code = _code(oauth, client_id="native", code_challenge=challenge, code_challenge_method="S256", scope="openid")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": "com.example.native:/cb"}
    if verifier:
        form["code_verifier"] = verifier
    assert oauth.token("native", **form).get_json()["error"] == error


def test_verifier_without_challenge_is_refused(oauth):
    code = _code(oauth)
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb",
                           code_verifier="y" * 50)
    assert response.get_json()["error"] == "invalid_request"


def test_public_client_redeems_with_pkce_and_no_secret(oauth):
    token, _ = oauth.code_flow(client_id="native", scope="openid offline_access")
    assert token.status_code == 200 and "refresh_token" in token.get_json()


def test_refresh_rotates_and_reuse_revokes_the_family(oauth, app):
    code = _code(oauth)
    first = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    second = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200
    rotated = second.get_json()["refresh_token"]
    assert rotated != first["refresh_token"]
    reuse = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    after = oauth.token("web", grant_type="refresh_token", refresh_token=rotated)
    assert after.status_code == 400
    assert _count(app, RefreshToken, revoked_at=None) == 0


def test_refresh_token_only_with_offline_access(oauth):
    code = _code(oauth, scope="openid profile")
    body = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    assert "refresh_token" not in body


@pytest.mark.parametrize("app_config", [{"GRANT_TYPES_ENABLED": ["authorization_code", "password"]}])
def test_no_refresh_token_nor_offline_access_while_the_refresh_grant_is_off(oauth):
    """Discovery leaves offline_access out when refresh_token is not in GRANT_TYPES_ENABLED; the
    server then neither grants the scope nor issues a refresh token that could never be used."""
    refused = oauth.authorize(client_id="web", scope="openid offline_access")
    assert redirect_params(refused.headers["Location"])["error"] == "invalid_scope"
    password = oauth.token("legacy", grant_type="password", username="bob", password=BOB_PASSWORD,
                           scope="openid offline_access")
    assert password.status_code == 400 and password.get_json()["error"] == "invalid_scope"
    body = oauth.token("web", grant_type="authorization_code", code=_code(oauth, scope="openid"),
                       redirect_uri="https://web.example.com/cb").get_json()
    assert "access_token" in body and "refresh_token" not in body


def test_refresh_with_narrower_scope_and_wider_scope(oauth):
    code = _code(oauth)
    rt = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()["refresh_token"]
    wider = oauth.token("web", grant_type="refresh_token", refresh_token=rt, scope="openid email offline_access")
    assert wider.get_json()["error"] == "invalid_scope"


def _remove_scope(app, client_id: str, scope: str) -> None:
    """`clients update CLIENT_ID --scope ...` without `scope` (workers see it at once: CLIENT_CACHE_SECONDS 0)."""
    from identity.services.clients import get_client, update_client

    with app.app_context():
        allowed = [s for s in get_client(client_id).allowed_scopes if s != scope]
        assert update_client(client_id, {"allowed_scopes": allowed})[1] == ["allowed_scopes"]


def test_a_scope_removed_from_the_client_is_refused_on_refresh_unless_left_out(oauth, app):
    """As IdentityServer answers: the refresh token's scopes are checked against the client's
    scopes now, not when it was issued; the client may still refresh with a narrower scope."""
    code = _code(oauth, scope="openid offline_access IdentityServerApi")
    rt = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()["refresh_token"]
    _remove_scope(app, "web", "IdentityServerApi")
    refused = oauth.token("web", grant_type="refresh_token", refresh_token=rt)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_scope", refused.get_json()
    narrower = oauth.token("web", grant_type="refresh_token", refresh_token=rt, scope="openid offline_access")
    assert narrower.status_code == 200 and narrower.get_json()["scope"] == "openid offline_access"


def test_a_code_issued_before_its_scope_was_removed_from_the_client_is_refused(oauth, app):
    code = _code(oauth, scope="openid IdentityServerApi")
    _remove_scope(app, "web", "IdentityServerApi")
    refused = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_scope", refused.get_json()
    again = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert again.get_json()["error"] == "invalid_grant"  # a failed redemption ends the code

def test_refresh_token_of_another_client_is_refused(oauth):
    code = _code(oauth)
    rt = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()["refresh_token"]
    assert oauth.token("mobile", grant_type="refresh_token", refresh_token=rt).status_code == 400


def test_client_credentials_token_names_the_client_as_its_sub_and_has_no_refresh_token(oauth, client):
    """RFC 9068 section 2.2: `sub` is REQUIRED; a token that acts for no user names the client."""
    response = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    body = response.get_json()
    assert response.status_code == 200 and "refresh_token" not in body
    claims = decode(client, body["access_token"])
    assert claims["sub"] == "service" and claims["client_id"] == "service" and claims["aud"] == ["IdentityServerApi"]
    assert not {"pwv", "auth_time", "amr"} & set(claims)


def test_a_client_credentials_token_still_acts_for_no_user(oauth, client, app):
    """With `sub` set to the client's id, the token is still no user's: the local API and
    userinfo refuse it, introspection names no user, and revocation puts its jti on the list."""
    with app.app_context():  # a user whose subject is the client's id must not be found by it
        db.session.query(User).filter_by(username="alice").update({"subject": "service"})
        db.session.commit()
    token = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    account = client.get("/localapi/account", headers=bearer)
    assert account.status_code == 403 and account.content_type == "application/problem+json"
    assert client.get("/connect/userinfo", headers=bearer).status_code in (401, 403)
    service = {"Authorization": "Basic " + base64.b64encode(b"service:service-secret-change-me").decode()}
    body = client.post("/connect/introspect", data={"token": token}, headers=service).get_json()
    assert body["active"] is True and body["sub"] == "service" and "username" not in body, body
    assert client.post("/connect/revocation", data={"token": token}, headers=service).status_code == 200
    assert client.post("/connect/introspect", data={"token": token}, headers=service).get_json() == {"active": False}


def test_client_credentials_with_post_auth_and_default_scope(oauth, client):
    body = oauth.token("service", auth="post", grant_type="client_credentials").get_json()
    assert decode(client, body["access_token"])["scope"] == "IdentityServerApi"


def test_client_credentials_refuses_identity_scopes(oauth):
    response = oauth.token("service", grant_type="client_credentials", scope="openid")
    assert response.get_json()["error"] == "invalid_scope"


def test_client_credentials_refused_for_clients_without_the_grant(oauth):
    response = oauth.token("web", grant_type="client_credentials")
    assert response.get_json()["error"] == "unauthorized_client"


def test_public_client_cannot_use_client_credentials(oauth):
    response = oauth.client.post("/connect/token", data={"grant_type": "client_credentials", "client_id": "native"})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_client", "unauthorized_client")


@pytest.mark.parametrize("auth_header", [
    "Basic " + base64.b64encode(b"service:wrong").decode(),
    "Basic " + base64.b64encode(b"nobody:wrong").decode(),
    "Basic !!!notbase64",
])
def test_bad_client_credentials_are_invalid_client_with_401(oauth, auth_header):
    response = oauth.client.post("/connect/token", data={"grant_type": "client_credentials"}, headers={"Authorization": auth_header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_password_grant_for_allowed_client(oauth, client):
    response = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                           scope="openid IdentityServerApi offline_access")
    body = response.get_json()
    assert response.status_code == 200 and "refresh_token" in body
    assert "sub" in decode(client, body["access_token"])


def test_password_grant_wrong_password(oauth):
    response = oauth.token("legacy", grant_type="password", username="alice", password="not-her-password-at-all")
    assert response.status_code == 400 and response.get_json()["error"] in ("invalid_grant", "invalid_request")


def test_password_grant_refused_for_other_clients(oauth):
    response = oauth.token("web", grant_type="password", username="alice", password=ALICE_PASSWORD)
    assert response.get_json()["error"] == "unauthorized_client"


@pytest.mark.parametrize("form", [{}, {"grant_type": "made_up"}, {"grant_type": "authorization_code"}])
def test_malformed_token_requests_are_oauth_errors(oauth, form):
    response = oauth.token("web", **form)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_request", "unsupported_grant_type", "invalid_grant")


@pytest.mark.parametrize("form", [{}, {"grant_type": ""}])
def test_a_token_request_without_grant_type_is_invalid_request(oauth, form):
    """RFC 6749 section 5.2: a request "missing a required parameter" is invalid_request;
    unsupported_grant_type is for a grant type the server does not support. A parameter sent
    without a value is as if omitted (section 3.1)."""
    response = oauth.token("web", **form)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request", response.get_json()


def test_get_on_token_endpoint_is_not_allowed_json(oauth):
    response = oauth.client.get("/connect/token")
    assert response.status_code == 405 and response.get_json()["error"] == "invalid_request"


def test_huge_token_request_is_413_json(oauth):
    response = oauth.client.post("/connect/token", data={"grant_type": "x" * 200_000})
    assert response.status_code == 413 and response.get_json()["error"] == "invalid_request"


# --- token_type_hint orders the search at revocation and introspection, it never narrows it ------

WEB_BASIC = {"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()}


def _web_tokens(oauth, scope="openid profile offline_access"):
    token, _ = oauth.code_flow(client_id="web", scope=scope)
    assert token.status_code == 200, token.get_json()
    return token.get_json()


@pytest.mark.parametrize("hint", ["refresh_token", "urn:example:other"])
def test_revocation_under_a_wrong_or_unknown_hint_still_revokes_the_access_token(oauth, hint):
    """RFC 7009 section 2.1: a server that does not find the token under the hinted type MUST
    search the others. A 200 that left the token working would tell the client it was revoked."""
    access = _web_tokens(oauth, scope="openid profile")["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert oauth.client.get("/connect/userinfo", headers=bearer).status_code == 200
    revoked = oauth.client.post("/connect/revocation", data={"token": access, "token_type_hint": hint}, headers=WEB_BASIC)
    assert revoked.status_code == 200, revoked.get_json()  # an unknown hint is ignored, not a 401
    assert oauth.client.get("/connect/userinfo", headers=bearer).status_code == 401


def test_revocation_of_a_refresh_token_under_the_access_token_hint_revokes_it(oauth):
    refresh = _web_tokens(oauth)["refresh_token"]
    revoked = oauth.client.post("/connect/revocation", data={"token": refresh, "token_type_hint": "access_token"},
                                headers=WEB_BASIC)
    assert revoked.status_code == 200
    assert oauth.token("web", grant_type="refresh_token", refresh_token=refresh).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("which, hint", [("access_token", "refresh_token"), ("refresh_token", "access_token")])
def test_introspection_under_the_other_hint_still_finds_the_token(oauth, which, hint):
    token = _web_tokens(oauth)[which]
    body = oauth.client.post("/connect/introspect", data={"token": token, "token_type_hint": hint}, headers=WEB_BASIC).get_json()
    assert body["active"] is True, body


# --- a refresh with a narrower scope narrows the access token, never the refresh token ----------


def test_a_narrower_refresh_keeps_the_refresh_tokens_own_scope(oauth):
    """RFC 6749 section 6: a new refresh token's scope MUST be identical to the one presented;
    only the access token is narrowed."""
    tokens = _web_tokens(oauth)
    narrowed = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                           scope="openid offline_access")
    assert narrowed.status_code == 200, narrowed.get_json()
    assert narrowed.get_json()["scope"] == "openid offline_access"
    again = oauth.token("web", grant_type="refresh_token", refresh_token=narrowed.get_json()["refresh_token"])
    assert again.status_code == 200, again.get_json()
    assert set(again.get_json()["scope"].split()) == {"openid", "profile", "offline_access"}


def test_a_refresh_narrowed_without_offline_access_still_rotates_the_refresh_token(oauth):
    """Narrowing the access token away from offline_access used to issue no new refresh token
    while consuming the old one, so the client's next refresh (with the token it rightly kept)
    was taken for a replay and revoked the family. The refresh token follows its own scope."""
    tokens = _web_tokens(oauth)
    narrowed = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                           scope="openid profile")
    assert narrowed.status_code == 200, narrowed.get_json()
    body = narrowed.get_json()
    assert body["scope"] == "openid profile" and "refresh_token" in body, body
    again = oauth.token("web", grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert again.status_code == 200, again.get_json()
    access = again.get_json()["access_token"]
    assert oauth.client.get("/connect/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200


def test_a_rotation_that_commits_while_its_family_is_revoked_loses_its_access_token_too(oauth, app, client,
                                                                                        database_uri, monkeypatch):
    """A thief rotated a stolen refresh token; the rightful client presents it again, which
    revokes the family. The thief's next rotation, committed by another worker while that
    revocation runs (as it starts to revoke the family's refresh tokens), loses its refresh token
    and the access token issued with it."""
    from identity.store import issued_grants as grant_rows
    from races import access_token_refused, rotated_by_another_worker_during

    code = _code(oauth)
    first = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    stolen = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"]).get_json()
    rotated = rotated_by_another_worker_during(monkeypatch, "revoke_family_tokens", database_uri, "web",
                                               stolen["refresh_token"], module=grant_rows)

    reuse = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"])

    assert reuse.status_code == 400 and rotated["response"].status_code == 200
    thief = rotated["response"].get_json()
    assert oauth.token("web", grant_type="refresh_token", refresh_token=thief["refresh_token"]).status_code == 400
    assert access_token_refused(app, client, thief) == (True, 401)


def test_a_disabled_users_refresh_token_is_refused_even_if_it_escaped_the_revocation(oauth, app):
    """Disabling a user revokes their refresh tokens; one that a rotation in flight committed after
    that (see test_postgres_concurrency.py) is refused for the user's switch alone."""
    code = _code(oauth)
    first = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(enabled=False))
        db.session.commit()
    refused = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"


def test_a_client_made_public_by_the_seed_cannot_redeem_what_it_held_as_a_confidential_client(oauth, app):
    """RFC 6749 6: a refresh token is bound to the client's authentication. A seed that drops a
    confidential client's secrets makes it public; the refresh tokens and codes issued while it
    had a secret would then be redeemed with no secret at all, by whoever holds them."""
    import copy
    import json

    from conftest import FLOW_CLIENTS
    from identity.services.seed import apply_seed, load_seed

    code = _code(oauth)
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    unused_code = _code(oauth)
    public = copy.deepcopy(FLOW_CLIENTS)
    web = next(c for c in public["clients"] if c["client_id"] == "web")
    web.pop("client_secrets")
    web["require_pkce"] = True
    with app.app_context():
        apply_seed(load_seed(json.dumps(public)))

    refreshed = oauth.client.post("/connect/token", data={"grant_type": "refresh_token", "client_id": "web",
                                                          "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    redeemed = oauth.client.post("/connect/token", data={"grant_type": "authorization_code", "client_id": "web",
                                                         "code": unused_code,
                                                         "redirect_uri": "https://web.example.com/cb"})
    assert redeemed.status_code == 400
    assert _count(app, RefreshToken, client_id="web", revoked_at=None) == 0


def test_a_code_verifier_or_challenge_outside_rfc_7636s_characters_is_refused(oauth, app):
    """RFC 7636 section 4.1: a verifier is 43 to 128 unreserved characters, and an S256 challenge
    is the verifier's hash in base64url. A trailing line feed is neither (a `$` in a pattern
    matches before one): the challenge is refused at the authorization endpoint, not stored in a
    code no verifier can redeem, and such a verifier is refused even when its hash matches."""
    verifier = "v" * 43 + "\n"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = _code(oauth, client_id="native", code_challenge=challenge, code_challenge_method="S256", scope="openid")
    response = oauth.token("native", grant_type="authorization_code", code=code, redirect_uri="com.example.native:/cb",
                           code_verifier=verifier)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request", response.get_json()

    _, challenge = pkce_pair()
    refused = oauth.authorize(client_id="native", scope="openid", code_challenge=challenge + "\n",
                              code_challenge_method="S256")
    assert redirect_params(refused.headers["Location"]).get("error") == "invalid_request", refused.headers["Location"]
    assert _count(app, AuthorizationCode) == 1  # the first request's code only


@pytest.mark.parametrize("app_config", [{"REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS": 1000}])
def test_a_refresh_token_family_ends_at_its_absolute_lifetime_however_often_it_is_used(oauth, app):
    """The refresh token's lifetime slides: each rotation issued a token good for another 30 days,
    so a stolen token used once a month lived for ever. A family now ends
    REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS after the sign-in it began with (IdentityServer's
    AbsoluteRefreshTokenLifetime): no token of it expires later, and one that would is refused."""
    code = _code(oauth)
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    with app.app_context():
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.consumed_at.is_(None)))
        assert row.expires_at <= row.auth_time + 1000
        # the sign-in was 2,000 seconds ago (a token issued before the setting, or with a longer one)
        db.session.execute(update(RefreshToken).where(RefreshToken.id == row.id)
                           .values(auth_time=row.auth_time - 2000, expires_at=row.auth_time + 3600))
        db.session.commit()
    refused = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("app_config", [{"REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS": 1000}])
def test_introspection_calls_inactive_a_refresh_token_the_refresh_grant_refuses(oauth, app):
    """RFC 7662: `active` says whether the token is usable now. A refresh token past its family's
    absolute lifetime, or of a single-factor sign-in once its client requires a second factor, is
    refused by the refresh grant, and introspection called it active."""
    from identity.models import Client

    def introspect(token):
        return oauth.client.post("/connect/introspect", data={"token": token},
                                 headers={"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()})

    first = oauth.token("web", grant_type="authorization_code", code=_code(oauth),
                        redirect_uri="https://web.example.com/cb").get_json()["refresh_token"]
    second = oauth.token("web", grant_type="authorization_code", code=_code(oauth),
                         redirect_uri="https://web.example.com/cb").get_json()["refresh_token"]
    assert introspect(first).get_json()["active"] is True
    with app.app_context():
        row = db.session.scalar(select(RefreshToken).order_by(RefreshToken.id).limit(1))
        db.session.execute(update(RefreshToken).where(RefreshToken.id == row.id)
                           .values(auth_time=row.auth_time - 2000, expires_at=row.auth_time + 3600))
        db.session.commit()
    assert introspect(first).get_json() == {"active": False}
    assert introspect(second).get_json()["active"] is True
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(require_mfa=True))
        db.session.commit()
    assert introspect(second).get_json() == {"active": False}
