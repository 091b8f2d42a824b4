"""Mutation review: each test here is the first to fail when one security check is broken
(a comparison flipped, a condition dropped, a refusal removed) where no other test did."""

from sqlalchemy import select

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import AuthorizationCode, Client
from mfa_actions import step_clock  # noqa: F401  (the fixture)

import pytest


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _set_client(app, client_id, **columns):
    """Change a client's row as an older release or a hand edit may have left it."""
    with app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == client_id))
        for name, value in columns.items():
            setattr(row, name, value)
        db.session.commit()


# --- redirect URIs ------------------------------------------------------------------------------

def test_a_redirect_uri_with_userinfo_never_matches_even_when_registered_so():
    """The userinfo refusal is not only the loopback rule's: a registered URI with userinfo (one
    stored before the registration rules refused it) matches nothing either."""
    from identity.oauth2.client import redirect_uri_matches

    assert not redirect_uri_matches(["https://evil@app.example/cb"], "https://evil@app.example/cb")
    assert not redirect_uri_matches(["http://evil@127.0.0.1/callback"], "http://evil@127.0.0.1/callback")


# --- PKCE ---------------------------------------------------------------------------------------

def test_a_public_client_needs_pkce_whatever_its_require_pkce_column_says(oauth, app):
    _set_client(app, "native", require_pkce=False)
    response = oauth.authorize(client_id="native", state="s1")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.id).limit(1)) is None


def test_a_code_challenge_with_a_trailing_line_feed_is_refused(oauth, app):
    """RFC 7636 section 4.2: 43 to 128 unreserved characters; Authlib's pattern ends in `$`, which
    also matches before a final line feed, so only the provider's own check refuses it."""
    response = oauth.authorize(client_id="native", state="s1", code_challenge="a" * 43 + "\n",
                               code_challenge_method="S256")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.id).limit(1)) is None


# --- JWT access tokens --------------------------------------------------------------------------

def _password_grant_token(client) -> str:
    from conftest import ALICE_PASSWORD

    response = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                          scope="openid")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def test_an_access_token_is_accepted_to_its_last_second_of_leeway_and_not_one_after(app, client, flow_clients,
                                                                                   monkeypatch):
    from identity.services import tokens
    from mfa_actions import claims

    token = _password_grant_token(client)
    last = claims(token)["exp"] + app.config["JWT_LEEWAY_SECONDS"]
    bearer = {"Authorization": f"Bearer {token}"}
    monkeypatch.setattr(tokens, "now", lambda: last)
    assert client.get("/connect/userinfo", headers=bearer).status_code == 200
    monkeypatch.setattr(tokens, "now", lambda: last + 1)
    refused = client.get("/connect/userinfo", headers=bearer)
    assert refused.status_code == 401
    assert 'error_description="token expired"' in refused.headers["WWW-Authenticate"]


# --- single-use codes ---------------------------------------------------------------------------

def test_a_code_redeemed_by_another_worker_meanwhile_is_refused_and_revokes_what_that_worker_issued(
        app, client, flow_clients, database_uri, monkeypatch):
    """Two redemptions of one code at once: the one whose save finds the code consumed is a
    second use (RFC 6749 section 4.1.2), refused, and it revokes the tokens the first one issued."""
    from identity.services import issued_grants
    from races import other_workers

    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    response = oauth.authorize(client_id="web", scope="openid offline_access")
    code = redirect_params(response.headers["Location"])["code"]
    form = dict(grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    original, other = issued_grants.user_of_grant, {}

    def redeemed_elsewhere_meanwhile(*args, **kwargs):
        if not other:
            other["started"] = True
            with other_workers(database_uri) as (worker,):
                other["response"] = OAuthActions(worker.test_client()).token("web", **form)
        return original(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "user_of_grant", redeemed_elsewhere_meanwhile)
    late = oauth.token("web", **form)
    monkeypatch.setattr(issued_grants, "user_of_grant", original)
    won = other["response"]
    assert won.status_code == 200, won.get_data(as_text=True)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    tokens = won.get_json()
    assert client.get("/connect/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}).status_code == 401
    assert oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400


# --- logout's id_token_hint ---------------------------------------------------------------------

def _resigned_id_token(oauth, app, **changes) -> str:
    """The web client's ID token for alice, its claims changed and signed again with our own key."""
    import jwt

    from identity.services import tokens
    from test_userinfo_logout import _web_tokens

    claims = jwt.decode(_web_tokens(oauth, scope="openid")["id_token"], options={"verify_signature": False})
    claims.update(changes)
    with app.test_request_context(base_url="https://localhost"):
        return tokens.sign(claims, app.config["ID_TOKEN_SIGNING_ALG"])


def _end_session_with(oauth, hint):
    return oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s"})


def test_an_id_token_hint_carrying_scope_or_client_id_is_refused(oauth, app):
    """A JWT with an access token's claims (`scope`, `client_id`) is not an ID token, whatever its `typ`."""
    for claims in ({"scope": "openid"}, {"client_id": "web"}):
        response = _end_session_with(oauth, _resigned_id_token(oauth, app, **claims))
        assert response.status_code == 400 and "Location" not in response.headers, claims
    assert oauth.client.get("/diagnostics").status_code == 200


# --- a code is its client's ---------------------------------------------------------------------

def test_a_code_sent_by_another_client_with_its_redirect_uri_and_verifier_is_refused_and_burnt(oauth, app):
    """The code's own redirect_uri and PKCE verifier do not make it another client's: web, holding
    native's code (a leaked redirect), gets invalid_grant, and the code is spent for native too."""
    from actions import pkce_pair

    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", scope="openid", code_challenge=challenge,
                               code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]
    form = dict(grant_type="authorization_code", code=code, redirect_uri="com.example.native:/cb", code_verifier=verifier)
    stolen = oauth.token("web", **form)
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    assert "access_token" not in stolen.get_json()
    assert oauth.token("native", **form).get_json()["error"] == "invalid_grant"


# --- max_age at its boundary --------------------------------------------------------------------

def test_max_age_is_met_by_a_sign_in_exactly_that_old_and_not_one_second_older(oauth, app, monkeypatch):
    """OpenID Connect Core 3.1.2.1: a sign-in more than max_age seconds ago is signed in again."""
    from identity.models import UserSession
    from identity.oauth2 import authorize

    with app.app_context():
        auth_time = db.session.scalar(select(UserSession.auth_time))
    monkeypatch.setattr(authorize, "now", lambda: auth_time + 60)
    assert "code" in redirect_params(oauth.authorize(client_id="web", max_age="60").headers["Location"])
    monkeypatch.setattr(authorize, "now", lambda: auth_time + 61)
    assert oauth.authorize(client_id="web", max_age="60").headers["Location"].startswith("/account/login")


def test_an_id_token_hint_of_an_earlier_session_asks_before_signing_out(oauth, app):
    """RP-Initiated Logout 1.0 section 2: the hint must name the current session (its `sid`) for
    the sign-out to go unasked; a token of an earlier sign-in of the same person does not."""
    from test_userinfo_logout import _web_tokens

    earlier = _web_tokens(oauth, scope="openid")["id_token"]
    AuthActions(oauth.client).logout()
    assert AuthActions(oauth.client).login().status_code == 302
    response = _end_session_with(oauth, earlier)
    assert response.status_code == 200 and "Location" not in response.headers
    assert oauth.client.get("/diagnostics").status_code == 200  # still signed in


def test_an_id_token_hint_of_another_person_asks_before_signing_out(oauth, app):
    """The hint names bob (an ID token without `sid`, as one of a sign-in with no browser
    session); alice is signed in: her sign-out is asked, not done on bob's token."""
    import time

    from identity.models import User
    from identity.services.tokens import sign

    with app.test_request_context(base_url="https://localhost"):
        bob = db.session.scalar(select(User.subject).where(User.username == "bob"))
        stamp = int(time.time())
        bobs = sign({"iss": "https://localhost", "sub": bob, "aud": "web", "iat": stamp, "exp": stamp + 300},
                    app.config["ID_TOKEN_SIGNING_ALG"])
    response = oauth.client.get("/connect/endsession", query_string={"id_token_hint": bobs})
    assert response.status_code == 200 and "Location" not in response.headers
    assert oauth.client.get("/diagnostics").status_code == 200  # alice still signed in

def test_an_id_token_hint_with_another_clients_client_id_is_refused(oauth, app):
    """RP-Initiated Logout 1.0 section 2: a client_id sent with the hint must be the hint's audience."""
    from test_userinfo_logout import _web_tokens

    hint = _web_tokens(oauth, scope="openid")["id_token"]
    response = oauth.client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "client_id": "native", "post_logout_redirect_uri": "https://web.example.com/bye"})
    assert response.status_code == 400 and "Location" not in response.headers
    assert oauth.client.get("/diagnostics").status_code == 200


# --- a refresh token's end ----------------------------------------------------------------------

def test_a_refresh_token_is_refused_one_second_after_it_expires(oauth, app, monkeypatch):
    """At expires_at the grant still takes it (test_time_review.py); a second later it does not."""
    from identity.models import RefreshToken
    from identity.services import issued_grants

    response = oauth.authorize(client_id="web", scope="openid offline_access")
    code = redirect_params(response.headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    with app.app_context():
        expires_at = db.session.scalar(select(RefreshToken.expires_at))
    monkeypatch.setattr(issued_grants, "now", lambda: expires_at + 1)
    refused = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"


# --- a TOTP step is accepted once ---------------------------------------------------------------

def test_the_write_that_accepts_a_totp_step_refuses_the_same_step_again(app, seeded, step_clock):
    """Two requests with one code at once both read the last step before either writes: the
    conditional UPDATE itself must take a step once (store/mfa.py), not only the read before it."""
    from identity.models import User
    from identity.store import mfa as mfa_rows
    from identity.store.writes import write
    from mfa_actions import enrol_user

    enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
        step = mfa_rows.totp_row(alice)[2] + 5
        assert write(mfa_rows.accept_step(alice, step)) == [1]
        assert write(mfa_rows.accept_step(alice, step)) == [0]
        assert write(mfa_rows.accept_step(alice, step - 1)) == [0]


# --- passkeys: the sign count and the challenge -------------------------------------------------

def test_a_passkey_presenting_the_stored_sign_count_again_is_a_clone(app):
    """The count must grow (WebAuthn Level 2, 7.2 step 21): an equal non-zero count is refused as
    a stale one is, and the stored count stays."""
    from identity.errors import PasskeyRefused
    from identity.models import Passkey
    from identity.services import accounts
    from test_passkeys import PASSWORD, register, sign_in
    from webauthn_keys import SoftKey

    with app.app_context():
        alice = accounts.create_user("alice", PASSWORD, name="Alice").id
        key = SoftKey()
        passkey_id = register(alice, key).id
        sign_in(key, count_step=5)  # stored: 5
        clone = SoftKey()
        clone.private, clone.credential_id, clone.sign_count = key.private, key.credential_id, 4
        with pytest.raises(PasskeyRefused, match="copied"):
            sign_in(clone)  # presents 5, as stored
        db.session.expire_all()
        assert db.session.get(Passkey, passkey_id).sign_count == 5


def test_a_passkey_answer_sent_twice_with_its_kept_state_signs_in_once(app):
    """An authenticator without a counter signs the same count: the challenge, spent at the first
    use, is what refuses the same answer posted twice (two requests carrying one state)."""
    from identity.errors import PasskeyRefused
    from identity.services import accounts, passkeys
    from test_passkeys import ISSUER, ORIGIN, PASSWORD, RP_ID, register
    from webauthn_keys import SoftKey

    with app.app_context():
        alice = accounts.create_user("alice", PASSWORD, name="Alice").id
        key = SoftKey()
        register(alice, key)
        ceremony = passkeys.authentication_options(ISSUER)
        answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID, count_step=0)
        assert passkeys.sign_in(ISSUER, ceremony.state, answer)[0].user_id == alice
        with pytest.raises(PasskeyRefused):
            passkeys.sign_in(ISSUER, ceremony.state, answer)


# --- an emailed link is consumed once -----------------------------------------------------------

def test_the_write_that_consumes_a_reset_link_refuses_it_a_second_time(app, seeded):
    """Two posts of one reset link at once both find it unused: the conditional UPDATE itself must
    let one of them consume it (store/account_tokens.py), not only the read before it."""
    from identity.models import User
    from identity.services import account_tokens

    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        token = account_tokens.issue(alice.id, account_tokens.PASSWORD_RESET, 3600, email=alice.email)
        db.session.commit()
        row = account_tokens.check(token, account_tokens.PASSWORD_RESET).row
        assert account_tokens.consume(row) is True
        assert account_tokens.consume(row) is False


# --- a bearer token sent once -------------------------------------------------------------------

def test_a_token_in_the_header_and_another_in_the_body_is_invalid_request(oauth, app):
    """RFC 6750 section 2: a client uses one method to send the token; the userinfo endpoint,
    which also takes it in a form body, refuses both at once rather than choosing one."""
    from test_userinfo_logout import _web_tokens

    token = _web_tokens(oauth, scope="openid")["access_token"]
    response = oauth.client.post("/connect/userinfo", data={"access_token": token},
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


# --- client credentials act for no user ---------------------------------------------------------

def test_client_credentials_refuses_identity_scopes_the_client_is_allowed_for_its_users(app, client, flow_clients):
    """A client allowed both the code grant (with openid, profile) and client_credentials: a
    token of its own carries no user, so openid or profile is invalid_scope, not a token."""
    _set_client(app, "web", allowed_grant_types=["authorization_code", "client_credentials"])
    for scope in ("openid", "profile IdentityServerApi"):
        response = OAuthActions(client).token("web", grant_type="client_credentials", scope=scope)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope", scope
    allowed = OAuthActions(client).token("web", grant_type="client_credentials", scope="IdentityServerApi")
    assert allowed.status_code == 200, allowed.get_data(as_text=True)


def test_a_code_whose_user_changed_password_during_its_redemption_issues_nothing(
        app, client, flow_clients, database_uri, monkeypatch):
    """A password change ends the user's codes by expiring them (issued_grants.end_user_codes); a
    redemption that read the code before that commit must lose at its consuming write."""
    from races import codes_ended_by_another_worker_during_redemption

    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    response = oauth.authorize(client_id="web", scope="openid offline_access")
    code = redirect_params(response.headers["Location"])["code"]
    ended = codes_ended_by_another_worker_during_redemption(monkeypatch, database_uri)
    late = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert ended and late.status_code == 400 and late.get_json()["error"] == "invalid_grant"


# --- a rotation in flight -----------------------------------------------------------------------

def _refresh_with_another_worker_meanwhile(app, client, database_uri, monkeypatch, meanwhile):
    """Rotate web's refresh token while, between its read and its write, another worker runs
    `meanwhile(worker_app, oauth_actions, refresh_token)`; (the late rotation's answer, its tokens before)."""
    from identity.services import issued_grants
    from races import other_workers

    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    response = oauth.authorize(client_id="web", scope="openid offline_access")
    code = redirect_params(response.headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    original, done = issued_grants.user_of_grant, {}

    def hooked(*args, **kwargs):
        if not done:
            done["ran"] = True
            with other_workers(database_uri) as (worker,):
                done["result"] = meanwhile(worker, OAuthActions(worker.test_client()), tokens["refresh_token"])
        return original(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "user_of_grant", hooked)
    late = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    monkeypatch.setattr(issued_grants, "user_of_grant", original)
    assert done.get("ran")
    return late, done.get("result")


def test_a_rotation_whose_grant_is_revoked_meanwhile_issues_nothing(app, client, flow_clients, database_uri,
                                                                    monkeypatch):
    from identity.models import User
    from identity.services import issued_grants

    def revoke_the_app(worker, _oauth, _token):
        with worker.app_context():
            alice = db.session.scalar(select(User.id).where(User.username == "alice"))
            issued_grants.revoke_user_client_grants(alice, "web")
            db.session.commit()

    late, _ = _refresh_with_another_worker_meanwhile(app, client, database_uri, monkeypatch, revoke_the_app)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
