"""Token paths that must close: codes after a password change or sign-out, codes burnt by a
failed redemption, access tokens of a revoked grant, `aud` at the local API and userinfo, and
which tokens /connect/endsession takes as an id_token_hint.

Revocations are checked on a token's first use after the revocation, or with the bearer cache
off (BEARER_CACHE_SECONDS=0), so a worker's cached answer cannot hide them.
"""

import base64
import hashlib
import time

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity import clock
from identity.constants import LOCAL_API_SCOPE
from identity.extensions import db
from identity.models import AuthorizationCode, Client, RefreshToken, RevokedAccessToken, User, UserSession
from identity.services.tokens import sign
from statements import statements

NEW_PASSWORD = "lantern-orchid-velvet-204"
WEB_REDIRECT = "https://web.example.com/cb"


@pytest.fixture
def app_config():
    return {"BEARER_CACHE_SECONDS": 0, "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8}


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def web_code(oauth, scope="openid profile IdentityServerApi"):
    response = oauth.authorize(client_id="web", scope=scope)
    assert response.status_code == 302, response.get_data(as_text=True)
    return redirect_params(response.headers["Location"])["code"]


def redeem(oauth, code, **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_REDIRECT, **extra}
    return oauth.token("web", **form)


def code_row(app, code):
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode).where(
            AuthorizationCode.code_hash == hashlib.sha256(code.encode()).hexdigest()))
        db.session.expunge_all()
        return row


def assert_refused(response, error="invalid_grant"):
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error, body
    assert "access_token" not in body


# --- codes do not outlive a password change or the session that minted them --------------------


def test_code_minted_before_a_local_api_password_change_does_not_redeem(oauth, app):
    api_token = redeem(oauth, web_code(oauth)).get_json()["access_token"]
    code = web_code(oauth)
    changed = oauth.client.post("/localapi/password", headers=bearer(api_token), json={
        "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.get_data(as_text=True)

    assert_refused(redeem(oauth, code, scope="openid"))
    with app.app_context():
        assert db.session.scalar(select(RefreshToken).where(RefreshToken.revoked_at.is_(None))) is None


def test_code_minted_before_a_password_change_on_the_page_does_not_redeem(oauth, app):
    """The page keeps the session it was changed from, so the code's session is still live: the
    password change itself must end the code."""
    code = web_code(oauth)
    page = oauth.client.get("/account/password")
    posted = oauth.client.post("/account/password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert posted.status_code in (200, 302), posted.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "alice")).password_version == 2
    assert oauth.client.get("/diagnostics").status_code == 200  # still signed in on this browser

    assert_refused(redeem(oauth, code))
    assert code_row(app, code).consumed_at is not None or code_row(app, code).expires_at <= int(time.time())


def test_code_minted_before_the_cli_set_password_does_not_redeem(oauth, app):
    code = web_code(oauth)
    result = app.test_cli_runner().invoke(args=["users", "set-password", "alice"], input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output

    assert_refused(redeem(oauth, code))


def test_code_does_not_redeem_after_its_session_signed_out(oauth, app):
    code = web_code(oauth)
    assert AuthActions(oauth.client).logout().status_code in (200, 302)

    assert_refused(redeem(oauth, code))


def test_code_redeems_while_its_session_is_live(oauth):
    """The control for the tests above: the same code, nothing in between, redeems."""
    response = redeem(oauth, web_code(oauth))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"BEARER_CACHE_SECONDS": 0, "SESSION_IDLE_SECONDS": 600,
                                         "AUTHORIZATION_CODE_LIFETIME_SECONDS": 900}])
def test_code_does_not_redeem_once_its_session_went_idle(oauth, app, monkeypatch):
    """The session's lifetimes apply at redemption too: a code that is itself still valid, from a
    session idle past SESSION_IDLE_SECONDS, is refused and burnt."""
    code = web_code(oauth)
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + 601)

    assert_refused(redeem(oauth, code))
    assert code_row(app, code).consumed_at is not None, "a refused redemption burns the code"
    with app.app_context():
        assert db.session.scalar(select(UserSession.revoked_at)) is None, "only the clock moved"


@pytest.mark.parametrize("app_config", [{"BEARER_CACHE_SECONDS": 0, "SIGNING_KEY_RELOAD_SECONDS": 300,
                                         "CLIENT_CACHE_SECONDS": 300}])
def test_a_code_is_read_with_its_session_in_one_statement(oauth, app, database_uri):
    """The token endpoint reads the code, its user and its session's times as one row, then
    consumes the code: two statements on the autocommit connection, none through the pool. On
    PostgreSQL a third reads the user's password version after the consume (a password change
    that committed as the consume waited outdates the code: issued_grants'
    _unless_outdated_by_a_password_change); SQLite's one write lock makes it needless there."""
    assert redeem(oauth, web_code(oauth)).status_code == 200  # the worker's keys and client snapshot
    code = web_code(oauth)
    with statements(app) as run:
        response = redeem(oauth, code)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert run.pooled == []
    assert run.autocommit == (3 if database_uri.startswith("postgresql") else 2)


# --- a failed redemption burns the code (RFC 9700 2.1.1) ----------------------------------------


def native_code(oauth):
    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", scope="openid profile", code_challenge=challenge,
                               code_challenge_method="S256")
    assert response.status_code == 302, response.get_data(as_text=True)
    return redirect_params(response.headers["Location"])["code"], verifier


def redeem_native(oauth, code, verifier, redirect_uri="com.example.native:/cb"):
    return oauth.token("native", grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                       code_verifier=verifier)


def test_wrong_code_verifier_burns_the_code(oauth, app):
    code, verifier = native_code(oauth)
    assert_refused(redeem_native(oauth, code, pkce_pair()[0]))

    assert_refused(redeem_native(oauth, code, verifier))
    assert code_row(app, code).consumed_at is not None


def test_wrong_redirect_uri_burns_the_code(oauth, app):
    code, verifier = native_code(oauth)
    assert_refused(redeem_native(oauth, code, verifier, redirect_uri="http://127.0.0.1/callback"))

    assert_refused(redeem_native(oauth, code, verifier))
    assert code_row(app, code).consumed_at is not None


def test_redemption_by_another_client_burns_the_code(oauth, app):
    code, verifier = native_code(oauth)
    assert_refused(oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=WEB_REDIRECT))

    assert_refused(redeem_native(oauth, code, verifier))
    assert code_row(app, code).consumed_at is not None


def test_missing_code_verifier_burns_the_code(oauth, app):
    code, verifier = native_code(oauth)
    refused = oauth.token("native", grant_type="authorization_code", code=code, redirect_uri="com.example.native:/cb")
    assert refused.status_code == 400

    assert_refused(redeem_native(oauth, code, verifier))


# --- every token of a revoked grant ends ------------------------------------------------------


def test_front_channel_access_token_dies_when_the_hybrid_code_is_replayed(oauth, app):
    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", response_type="code token", scope=f"openid {LOCAL_API_SCOPE}",
                               code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302, response.get_data(as_text=True)
    params = redirect_params(response.headers["Location"])
    front, code = params["access_token"], params["code"]
    form = dict(grant_type="authorization_code", code=code, redirect_uri=oauth.REDIRECTS["mobile"], code_verifier=verifier)
    first = oauth.token("mobile", **form)
    assert first.status_code == 200, first.get_data(as_text=True)
    back = first.get_json()["access_token"]

    assert_refused(oauth.token("mobile", **form))  # the replay

    for token in (front, back):
        assert oauth.client.get("/localapi/account", headers=bearer(token)).status_code == 401
    with app.app_context():
        revoked = set(db.session.scalars(select(RevokedAccessToken.jti)))
    assert len(revoked) == 2


def test_front_channel_access_token_dies_when_the_family_is_revoked(oauth, app):
    """Revoking the refresh token (RFC 7009) ends the family, the front-channel token included."""
    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", response_type="code token",
                               scope=f"openid offline_access {LOCAL_API_SCOPE}", code_challenge=challenge,
                               code_challenge_method="S256")
    params = redirect_params(response.headers["Location"])
    tokens = oauth.token("mobile", grant_type="authorization_code", code=params["code"],
                         redirect_uri=oauth.REDIRECTS["mobile"], code_verifier=verifier).get_json()
    revoked = oauth.client.post("/connect/revocation", data={"token": tokens["refresh_token"]},
                                headers={"Authorization": "Basic " + base64.b64encode(b"mobile:s3cret").decode()})
    assert revoked.status_code == 200

    for token in (params["access_token"], tokens["access_token"]):
        assert oauth.client.get("/localapi/account", headers=bearer(token)).status_code == 401


def revoke_on_grants_page(client, client_id):
    page = client.get("/account/grants")
    assert page.status_code == 200
    return client.post("/account/grants/revoke", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                       "client_id": client_id})


def test_revoking_an_app_on_the_grants_page_ends_its_access_tokens(oauth, app):
    with_refresh = redeem(oauth, web_code(oauth, "openid offline_access IdentityServerApi")).get_json()
    rotated = oauth.token("web", grant_type="refresh_token", refresh_token=with_refresh["refresh_token"]).get_json()
    without_refresh = redeem(oauth, web_code(oauth, f"openid {LOCAL_API_SCOPE}")).get_json()
    other = OAuthActions(oauth.client).code_flow("native", scope=f"openid {LOCAL_API_SCOPE}")[0].get_json()
    tokens = [with_refresh["access_token"], rotated["access_token"], without_refresh["access_token"]]

    assert revoke_on_grants_page(oauth.client, "web").status_code == 302

    for token in tokens:
        assert oauth.client.get("/localapi/account", headers=bearer(token)).status_code == 401
    assert oauth.client.get("/localapi/account", headers=bearer(other["access_token"])).status_code == 200
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert_refused(refreshed)


def test_a_replayed_refresh_token_ends_its_family_without_fetching_it(oauth, app):
    """A refresh token used twice revokes its family (RFC 9700 4.14.2); the revocation counts the
    tokens it ends, and fetches none of their rows to do it."""
    first = redeem(oauth, web_code(oauth, "openid offline_access IdentityServerApi")).get_json()
    rotated = oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"]).get_json()
    with statements(app) as run:
        assert_refused(oauth.token("web", grant_type="refresh_token", refresh_token=first["refresh_token"]))
    revocations = [s for s in run.pooled if s.startswith("UPDATE refresh_tokens SET revoked_at")]
    assert revocations, run.pooled
    assert not [s for s in revocations if "RETURNING" in s], revocations
    assert_refused(oauth.token("web", grant_type="refresh_token", refresh_token=rotated["refresh_token"]))


# --- aud at the local API and userinfo ----------------------------------------------------------


def forged(app, **claims):
    """An access token signed with our key, alice's, for `claims` over sensible defaults."""
    with app.test_request_context(base_url="https://localhost"):
        user = db.session.scalar(select(User).where(User.username == "alice"))
        stamp = int(time.time())
        base = {"iss": "https://localhost", "sub": user.subject, "client_id": "web", "iat": stamp, "nbf": stamp,
                "exp": stamp + 600, "jti": f"forged-{time.monotonic_ns()}", "auth_time": stamp,
                "pwv": user.password_version}
        return sign({**base, **claims}, app.config["ACCESS_TOKEN_SIGNING_ALG"], typ="at+jwt")


def test_local_api_refuses_a_token_for_another_audience(oauth, app):
    token = forged(app, aud=["payments"], scope=f"openid {LOCAL_API_SCOPE}")
    response = oauth.client.get("/localapi/account", headers=bearer(token))
    assert response.status_code == 401, response.get_data(as_text=True)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_local_api_takes_its_audience_as_a_string_or_in_a_list(oauth, app):
    for aud in (LOCAL_API_SCOPE, [LOCAL_API_SCOPE], ["payments", LOCAL_API_SCOPE]):
        token = forged(app, aud=aud, scope=f"openid {LOCAL_API_SCOPE}")
        assert oauth.client.get("/localapi/account", headers=bearer(token)).status_code == 200, aud


def test_userinfo_refuses_a_token_for_another_audience(oauth, app):
    token = forged(app, aud=["payments"], scope="openid profile")
    response = oauth.client.get("/connect/userinfo", headers=bearer(token))
    assert response.status_code == 401, response.get_data(as_text=True)
    missing = forged(app, scope="openid profile")
    assert oauth.client.get("/connect/userinfo", headers=bearer(missing)).status_code == 401


def test_tokens_this_server_issues_are_accepted_where_their_scopes_say(oauth, app):
    both = redeem(oauth, web_code(oauth, f"openid profile {LOCAL_API_SCOPE}")).get_json()["access_token"]
    assert oauth.client.get("/localapi/account", headers=bearer(both)).status_code == 200
    assert oauth.client.get("/connect/userinfo", headers=bearer(both)).status_code == 200
    identity_only = redeem(oauth, web_code(oauth, "openid profile")).get_json()["access_token"]
    assert oauth.client.get("/connect/userinfo", headers=bearer(identity_only)).status_code == 200
    assert oauth.client.get("/localapi/account", headers=bearer(identity_only)).status_code == 403


# --- id_token_hint takes ID tokens only --------------------------------------------------------


def test_endsession_refuses_an_access_token_as_id_token_hint(oauth, app):
    access_token = redeem(oauth, web_code(oauth, "openid profile")).get_json()["access_token"]
    response = oauth.client.get("/connect/endsession", query_string={"id_token_hint": access_token})
    assert response.status_code == 400
    assert oauth.client.get("/diagnostics").status_code == 200  # still signed in


def test_endsession_refuses_a_hint_whose_audience_is_not_a_client(oauth, app):
    with app.test_request_context(base_url="https://localhost"):
        sub = db.session.scalar(select(User.subject).where(User.username == "alice"))
        stamp = int(time.time())
        hint = sign({"iss": "https://localhost", "sub": sub, "aud": "no-such-client", "iat": stamp, "exp": stamp + 300},
                    app.config["ID_TOKEN_SIGNING_ALG"])
    response = oauth.client.get("/connect/endsession", query_string={"id_token_hint": hint})
    assert response.status_code == 400
    assert oauth.client.get("/diagnostics").status_code == 200


def test_endsession_takes_an_expired_id_token_of_ours(oauth, app):
    with app.test_request_context(base_url="https://localhost"):
        sub = db.session.scalar(select(User.subject).where(User.username == "alice"))
        stamp = int(time.time()) - 7200
        # issued two hours ago to a client registered before it (a hint older than its client's
        # registration is a removed client's: refused, tests/test_lifecycle_review.py)
        db.session.execute(update(Client).where(Client.client_id == "web").values(created_at=stamp - 3600))
        db.session.commit()
        hint = sign({"iss": "https://localhost", "sub": sub, "aud": "web", "iat": stamp, "exp": stamp + 300},
                    app.config["ID_TOKEN_SIGNING_ALG"])
    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye"})
    assert response.status_code == 302 and response.headers["Location"] == "https://web.example.com/bye"
    assert oauth.client.get("/diagnostics").status_code == 302


def test_endsession_refuses_an_id_token_of_another_issuer(oauth, app):
    with app.test_request_context(base_url="https://localhost"):
        stamp = int(time.time())
        hint = sign({"iss": "https://evil.example", "sub": "x", "aud": "web", "iat": stamp, "exp": stamp + 300},
                    app.config["ID_TOKEN_SIGNING_ALG"])
    assert oauth.client.get("/connect/endsession", query_string={"id_token_hint": hint}).status_code == 400


def test_revoking_an_app_ends_its_implicit_access_tokens(oauth, app):
    response = oauth.authorize(client_id="implicit", response_type="id_token token", scope="openid profile",
                               nonce="n-1")
    assert response.status_code == 302, response.get_data(as_text=True)
    token = redirect_params(response.headers["Location"])["access_token"]

    assert revoke_on_grants_page(oauth.client, "implicit").status_code == 302

    assert oauth.client.get("/connect/userinfo", headers=bearer(token)).status_code == 401


def test_revoking_an_app_ends_its_password_grant_access_tokens(oauth, app):
    issued = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                         scope=f"openid {LOCAL_API_SCOPE}")
    assert issued.status_code == 200, issued.get_data(as_text=True)
    assert "refresh_token" not in issued.get_json()

    assert revoke_on_grants_page(oauth.client, "legacy").status_code == 302

    assert oauth.client.get("/localapi/account", headers=bearer(issued.get_json()["access_token"])).status_code == 401
