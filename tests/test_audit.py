"""The audit log of security events, and `flask --app app audit tail` that prints it as JSON lines."""

import base64
import json
from datetime import datetime
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User

NEW_PASSWORD = "violet-anchor-meadow-482"
MOBILE_BASIC = {"Authorization": "Basic " + base64.b64encode(b"mobile:s3cret").decode()}


def events(app, name: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if name:
            query = query.where(AuditEvent.event == name)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def alice_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == "alice"))


def only(app, name: str) -> AuditEvent:
    rows = events(app, name)
    assert len(rows) == 1, f"{name}: {[(e.event, e.detail) for e in events(app)]}"
    return rows[0]


def tail(runner, *args) -> list[dict]:
    result = runner.invoke(args=["audit", "tail", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.strip()]


def mobile_tokens(client) -> dict:
    """Signed in: a hybrid flow of the mobile app with offline_access; returns its token response."""
    oauth = OAuthActions(client)
    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", response_type="code id_token", nonce="n-1",
                               scope="openid offline_access IdentityServerApi",
                               code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302, response.get_data(as_text=True)
    code = redirect_params(response.headers["Location"])["code"]
    token = oauth.token("mobile", grant_type="authorization_code", code=code, code_verifier=verifier,
                        redirect_uri=oauth.REDIRECTS["mobile"])
    assert token.status_code == 200, token.get_data(as_text=True)
    return token.get_json()


def test_an_event_is_kept_only_with_its_callers_commit(app):
    from identity.services import audit

    with app.app_context():
        audit.record("probe_rolled_back", detail={"n": 1}, ip="203.0.113.9")
        db.session.rollback()
        audit.record("probe_kept", user_id=7, client_id="spa", detail={"n": 2}, ip="203.0.113.9")
        db.session.commit()
    kept = only(app, "probe_kept")
    assert not events(app, "probe_rolled_back")
    assert (kept.user_id, kept.client_id, kept.detail, kept.ip) == (7, "spa", {"n": 2}, "203.0.113.9")


# --- sign-in ----------------------------------------------------------------------------------------


def test_successful_sign_in_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    event = only(app, "sign_in")
    assert event.user_id == alice_id(app)
    assert event.ip == "127.0.0.1"
    assert abs(event.at - datetime.now().timestamp()) < 60


def test_sign_in_for_a_client_names_the_client(app, client, seeded):
    oauth = OAuthActions(client)
    location = oauth.authorize(code_challenge=pkce_pair()[1], code_challenge_method="S256").headers["Location"]
    return_url = location.split("returnUrl=", 1)[1]
    assert AuthActions(client).login(return_url=unquote(return_url)).status_code == 302
    assert only(app, "sign_in").client_id == "spa"


@pytest.mark.parametrize("username,password,reason", [
    ("alice", "not-the-password-123", "bad_password"),
    ("nobody-here", "whatever-password-123", "unknown_user"),
])
def test_failed_sign_in_is_recorded_with_the_reason(app, client, seeded, username, password, reason):
    assert AuthActions(client).login(username=username, password=password).status_code == 400
    event = only(app, "sign_in_failed")
    assert event.detail["reason"] == reason
    assert event.user_id == (alice_id(app) if username == "alice" else None)
    assert password not in json.dumps(event.detail), "the tried password is not kept"
    assert not events(app, "sign_in")


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 3, "LOCKOUT_SECONDS": 300}])
def test_lockout_is_recorded_once_and_attempts_while_locked_too(app, client, seeded):
    auth = AuthActions(client)
    for _ in range(3):
        assert auth.login(password="wrong-password-000").status_code == 400
    locked = only(app, "account_locked")
    assert locked.user_id == alice_id(app)

    assert auth.login().status_code == 400, "the right password does not open a locked account"
    reasons = [e.detail["reason"] for e in events(app, "sign_in_failed")]
    assert reasons == ["bad_password"] * 3 + ["locked"]
    assert len(events(app, "account_locked")) == 1


# --- password -----------------------------------------------------------------------------------------


def test_password_change_on_the_page_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    page = client.get("/account/password")
    response = client.post("/account/password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 200
    event = only(app, "password_changed")
    assert event.user_id == alice_id(app)
    assert NEW_PASSWORD not in json.dumps(event.detail) and ALICE_PASSWORD not in json.dumps(event.detail)


def test_password_change_through_the_local_api_names_the_client(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    token = mobile_tokens(client)["access_token"]
    response = client.post("/localapi/password", headers={"Authorization": f"Bearer {token}"}, json={
        "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 204
    event = only(app, "password_changed")
    assert (event.user_id, event.client_id) == (alice_id(app), "mobile")


def test_wrong_current_password_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    page = client.get("/account/password")
    client.post("/account/password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": "not-it-at-all-123",
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert only(app, "password_change_failed").user_id == alice_id(app)
    assert not events(app, "password_changed")


# --- consent and tokens ------------------------------------------------------------------------------------


def test_consent_granted_and_revoked_are_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    location = oauth.authorize(scope="openid profile", code_challenge=pkce_pair()[1],
                               code_challenge_method="S256").headers["Location"]
    assert oauth.consent(location, remember=True).status_code == 303
    granted = only(app, "consent_granted")
    assert (granted.user_id, granted.client_id) == (alice_id(app), "spa")
    assert granted.detail["scopes"] == ["openid", "profile"]

    page = client.get("/account/grants")
    response = client.post("/account/grants/revoke", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                           "client_id": "spa"})
    assert response.status_code == 302
    revoked = only(app, "consent_revoked")
    assert (revoked.user_id, revoked.client_id) == (alice_id(app), "spa")


def test_consent_not_remembered_is_not_a_grant(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    location = oauth.authorize(code_challenge=pkce_pair()[1], code_challenge_method="S256").headers["Location"]
    assert oauth.consent(location, remember=False).status_code == 303
    assert not events(app, "consent_granted")


def test_refresh_token_revoked_at_the_revocation_endpoint_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    tokens = mobile_tokens(client)
    response = client.post("/connect/revocation", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
                           headers=MOBILE_BASIC)
    assert response.status_code == 200
    event = only(app, "token_revoked")
    assert (event.user_id, event.client_id) == (alice_id(app), "mobile")
    assert event.detail["reason"] == "revocation_endpoint"
    assert tokens["refresh_token"] not in json.dumps(event.detail)


def test_access_token_revoked_at_the_revocation_endpoint_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    tokens = mobile_tokens(client)
    response = client.post("/connect/revocation", data={"token": tokens["access_token"], "token_type_hint": "access_token"},
                           headers=MOBILE_BASIC)
    assert response.status_code == 200
    event = only(app, "token_revoked")
    assert event.client_id == "mobile"
    assert tokens["access_token"] not in json.dumps(event.detail)


def test_refresh_token_reuse_is_recorded(app, client, seeded):
    assert AuthActions(client).login().status_code == 302
    tokens = mobile_tokens(client)
    oauth = OAuthActions(client)
    assert oauth.token("mobile", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200
    assert oauth.token("mobile", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400
    event = only(app, "token_revoked")
    assert event.detail["reason"] == "refresh_token_reused"
    assert (event.user_id, event.client_id) == (alice_id(app), "mobile")


# --- keys ------------------------------------------------------------------------------------------------------


def test_key_rotation_is_recorded(app, runner):
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    event = only(app, "key_rotated")
    kids = event.detail["kids"]
    assert kids and all(kid in result.output for kid in kids)


# --- audit tail -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 2}])
def test_audit_tail_prints_the_events_as_json_lines(app, client, runner, seeded):
    auth = AuthActions(client)
    auth.login(password="wrong-password-000")
    auth.login(password="wrong-password-000")  # locks
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0

    lines = tail(runner, "-n", "100")
    names = [line["event"] for line in lines]
    assert names[-4:] == ["sign_in_failed", "sign_in_failed", "account_locked", "key_rotated"], names
    for line in lines:
        assert set(line) >= {"at", "event", "user_id", "client_id", "ip", "detail"}
        datetime.strptime(line["at"], "%Y-%m-%d %H:%M:%SZ")
    locked = lines[-2]
    assert locked["user_id"] == alice_id(app) and locked["ip"] == "127.0.0.1"
    assert "wrong-password-000" not in "\n".join(json.dumps(line) for line in lines)


def test_audit_tail_shows_the_newest_events_oldest_first(app, client, runner, seeded):
    auth = AuthActions(client)
    auth.login(username="ghost", password="whatever-password-123")
    auth.login()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert [line["event"] for line in tail(runner, "-n", "2")] == ["sign_in", "key_rotated"]
    assert [line["event"] for line in tail(runner, "--lines", "3")] == ["sign_in_failed", "sign_in", "key_rotated"]


def test_audit_tail_shows_twenty_by_default(app, client, runner, seeded):
    auth = AuthActions(client)
    for i in range(22):
        auth.login(username=f"ghost-{i}", password="whatever-password-123")
    assert len(tail(runner)) == 20


def test_audit_tail_on_an_empty_log_prints_nothing(app, runner):
    with app.app_context():
        db.session.execute(AuditEvent.__table__.delete())
        db.session.commit()
    assert tail(runner) == []


# --- the caller's address --------------------------------------------------------------------------------------


def test_the_service_reads_no_request(app):
    """The address comes from the web layer (identity/web/caller.py), not from Flask's request."""
    from identity.services import audit

    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.9"}):  # no request hooks ran
        audit.record("probe", detail={})
        db.session.commit()
    assert only(app, "probe").ip is None


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1}])
def test_events_carry_the_address_the_web_layer_gives(app, client, runner, seeded):
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.7"
    assert AuthActions(client).login(password="wrong-password-000").status_code == 400
    assert only(app, "sign_in_failed").ip == "198.51.100.7", "the address ProxyFix corrected"
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert only(app, "key_rotated").ip is None, "a command after a request carries no request's address"


# --- sign-out ---------------------------------------------------------------------------------------


def test_signing_out_is_recorded_once(app, client, seeded):
    """Ending a session is a security event (ASVS 4.0.3, 7.1.3): "Sign out" is recorded as the
    sessions page's end of this browser's entry is, and a second post of the form records nothing."""
    auth = AuthActions(client)
    auth.login()
    page = client.get("/account/logout")
    form = {"csrf_token": csrf_token(page.get_data(as_text=True))}
    assert client.post("/account/logout", data=form).status_code == 200
    event = only(app, "session_ended")
    assert (event.user_id, event.detail, event.ip) == (alice_id(app), {"reason": "signed_out"}, "127.0.0.1")
    client.post("/account/logout", data=form)  # signed out already: nothing more ends
    assert len(events(app, "session_ended")) == 1


def test_rp_initiated_logout_is_recorded(app, client, seeded):
    AuthActions(client).login()
    page = client.get("/connect/endsession")
    assert page.status_code == 200
    client.post("/connect/endsession", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    event = only(app, "session_ended")
    assert (event.user_id, event.detail) == (alice_id(app), {"reason": "end_session"})


# --- client authentication ---------------------------------------------------------------------------


def test_a_failed_client_authentication_is_recorded(app, client, seeded):
    """A client's secret guessed at the token, revocation or introspection endpoint is an
    authentication decision like a user's (ASVS 4.0.3, 7.2.1): recorded with the client id as sent,
    the method and the endpoint, never the secret. A right one records nothing."""
    wrong = {"Authorization": "Basic " + base64.b64encode(b"service:not-the-secret").decode()}
    assert client.post("/connect/token", data={"grant_type": "client_credentials"}, headers=wrong).status_code == 401
    assert client.post("/connect/introspect", data={"token": "x", "client_id": "nobody",
                                                    "client_secret": "guess-0123"}).status_code == 401
    assert client.post("/connect/token", data={"grant_type": "client_credentials", "client_id": "service"}).status_code == 401
    right = OAuthActions(client).token("service", grant_type="client_credentials")
    assert right.status_code == 200
    failed = events(app, "client_auth_failed")
    assert [(e.client_id, e.detail, e.ip) for e in failed] == [
        ("service", {"method": "client_secret_basic", "endpoint": "token"}, "127.0.0.1"),
        ("nobody", {"method": "client_secret_post", "endpoint": "introspection"}, "127.0.0.1"),
        ("service", {"method": "none", "endpoint": "token"}, "127.0.0.1"),
    ]
    assert not any("not-the-secret" in str(e.detail) or "guess-0123" in str(e.detail) for e in events(app))


def test_a_code_burnt_by_a_failed_redemption_is_recorded(app, client, seeded):
    """A code offered with a wrong code_verifier is what PKCE stops: an intercepted code. Its
    redemption fails and burns the code (RFC 9700 section 2.1.1), and is recorded, as the replay
    of a used code is (ASVS 4.0.3, 7.2.1): the client, the code's user, what failed. Only once."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="spa", code_challenge=challenge, code_challenge_method="S256")
    if "/consent" in response.headers["Location"]:
        response = oauth.consent(response.headers["Location"])
    code = redirect_params(response.headers["Location"])["code"]
    wrong = pkce_pair()[0]
    failed = oauth.token("spa", grant_type="authorization_code", code=code, code_verifier=wrong,
                         redirect_uri=oauth.REDIRECTS["spa"])
    assert failed.status_code == 400 and failed.get_json()["error"] == "invalid_grant"
    event = only(app, "authorization_code_refused")
    assert (event.user_id, event.client_id, event.ip) == (alice_id(app), "spa", "127.0.0.1")
    assert event.detail == {"error": "invalid_grant", "description": "Code challenge failed."}
    assert wrong not in json.dumps(event.detail) and code not in json.dumps(event.detail)


def test_a_session_ended_by_another_users_sign_in_is_recorded(app, client, flow_clients):
    """Another user signing in over a browser's session ends it, as a sign-out would: recorded as one."""
    from conftest import BOB_PASSWORD

    auth = AuthActions(client)
    auth.login()
    assert auth.login("bob", BOB_PASSWORD).status_code == 302
    event = only(app, "session_ended")
    assert (event.user_id, event.detail) == (alice_id(app), {"reason": "another_user_signed_in"})
