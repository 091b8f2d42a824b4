"""The password change for a user with a second factor: POST /localapi/password and the
/account/password page need a code (`otp`) unless the sign-in used the factor within
MFA_RECENT_SECONDS; GET /localapi/account says mfa_enabled. End to end first: the mobile app
(hybrid + PKCE) against a real HTTP server."""

import re
import secrets
import time

import pytest
import requests

from actions import AuthActions, OAuthActions
from conftest import ALICE_PASSWORD, csrf_token
from mfa_actions import CLOCK, claims, code_at, enrol_user, sign_in_with_code, step_clock  # noqa: F401
from servers import authorize, csrf_from, redirect_params, sign_in, token_request

NEW_PASSWORD = "lantern-orchid-velvet-204"
MOBILE = {"client_id": "mobile", "secret": "s3cret", "redirect_uri": "com.example.app:/callback"}
SCOPE = "openid profile IdentityServerApi offline_access"
MFA_REQUIRED = "/problems/mfa-required"


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def change(token: str, base: str = "", client=None, **extra):
    body = {"current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD,
            **extra}
    if client is not None:
        return client.post("/localapi/password", json=body, headers=bearer(token))
    return requests.post(base + "/localapi/password", json=body, headers=bearer(token), timeout=30)


@pytest.mark.parametrize("app_config", [{"MFA_RECENT_SECONDS": 1}])
def test_the_mobile_app_with_totp_and_the_password_change(live_server, seeded, app):
    base = live_server.url
    secret, codes = enrol_user(app)
    browser = requests.Session()
    first = sign_in(browser, base, "alice", ALICE_PASSWORD)
    assert first.status_code == 302 and first.headers["Location"].startswith("/account/login/mfa")
    page = browser.get(base + "/account/login/mfa", timeout=30)
    second = browser.post(base + "/account/login/mfa", data={"csrf_token": csrf_from(page.text), "code": code_at(secret)},
                          timeout=30, allow_redirects=False)
    assert second.status_code == 302, second.text
    CLOCK.next_step()

    response, verifier = authorize(browser, base, client_id=MOBILE["client_id"], redirect_uri=MOBILE["redirect_uri"],
                                   scope=SCOPE, response_type="code id_token", nonce=secrets.token_urlsafe(12))
    assert response.status_code == 302 and response.headers["Location"].startswith(MOBILE["redirect_uri"]), response.text
    params = redirect_params(response)
    assert claims(params["id_token"])["amr"] == ["pwd", "otp", "mfa"]
    tokens = token_request(base, MOBILE["client_id"], MOBILE["secret"], grant_type="authorization_code",
                           code=params["code"], redirect_uri=MOBILE["redirect_uri"], code_verifier=verifier).json()
    access = tokens["access_token"]
    assert claims(access)["amr"] == ["pwd", "otp", "mfa"] and claims(access)["acr"] == "mfa"

    account = requests.get(base + "/localapi/account", headers=bearer(access), timeout=30)
    assert account.status_code == 200 and account.json()["mfa_enabled"] is True

    time.sleep(2.1)  # the sign-in is no longer recent (MFA_RECENT_SECONDS=1)
    refused = change(access, base)
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith(MFA_REQUIRED) and refused.json()["status"] == 403
    wrong = change(access, base, otp="000000" if code_at(secret) != "000000" else "111111")
    assert wrong.status_code == 403 and wrong.json()["type"].endswith(MFA_REQUIRED)
    accepted = change(access, base, otp=code_at(secret))
    assert accepted.status_code == 204, accepted.text
    assert sign_in(requests.Session(), base, "alice", NEW_PASSWORD).headers["Location"].startswith("/account/login/mfa")


@pytest.fixture
def password_token(client, app, flow_clients):
    """An access token of alice from a password-only sign-in; then she sets up an authenticator app."""
    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")
    secret, codes = enrol_user(app)
    return token.get_json()["access_token"], secret, codes


def test_a_token_without_mfa_needs_otp(client, app, password_token):
    access, secret, codes = password_token
    assert client.get("/localapi/account", headers=bearer(access)).get_json()["mfa_enabled"] is True
    refused = change(access, client=client)
    assert refused.status_code == 403 and refused.get_json()["type"].endswith(MFA_REQUIRED)
    assert change(access, client=client, otp=codes[0]).status_code == 204  # a recovery code does too


def test_the_403_says_how_to_step_up_as_rfc_9470_does(client, app, password_token):
    """RFC 6750 section 3: a bearer request refused for its token carries WWW-Authenticate; RFC 9470
    names this case (insufficient_user_authentication) and tells the app what sign-in would do."""
    access, _, _ = password_token
    refused = change(access, client=client)
    assert refused.status_code == 403
    challenge = refused.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer ") and 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="mfa"' in challenge and f'max_age={app.config["MFA_RECENT_SECONDS"]}' in challenge


def test_a_recovery_code_is_spent_by_the_password_change(client, app, password_token):
    access, secret, codes = password_token
    assert change(access, client=client, otp=codes[0]).status_code == 204
    fresh = app.test_client()
    from mfa_actions import password_step, second_step
    password_step(fresh, password=NEW_PASSWORD)
    assert second_step(fresh, codes[0]).status_code == 400


@pytest.mark.parametrize("kind", ["recovery", "totp"])
@pytest.mark.parametrize("refusal", [
    {"current_password": "not-the-right-password-x"},
    {"new_password": "short", "confirm_password": "short"},  # refused by the policy
    {"confirm_password": NEW_PASSWORD + "x"},
])
def test_a_change_refused_for_its_passwords_keeps_the_code(client, app, password_token, kind, refusal):
    """The code is spent only with a change that succeeds: a recovery code is one of ten, for good."""
    access, secret, codes = password_token
    code = codes[0] if kind == "recovery" else code_at(secret)
    refused = change(access, client=client, otp=code, **refusal)
    assert refused.status_code == 400, refused.get_data(as_text=True)
    assert change(access, client=client, otp=code).status_code == 204


def test_a_wrong_code_with_the_right_passwords_counts_toward_the_lockout(client, app, password_token):
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import User

    access, _, codes = password_token
    assert change(access, client=client, otp="AAAAA-AAAAA").status_code == 403
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 1
    assert change(access, client=client, otp=codes[0]).status_code == 204


def test_a_recent_sign_in_with_mfa_needs_no_otp(client, app, flow_clients):
    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")
    assert change(token.get_json()["access_token"], client=client).status_code == 204


def test_the_user_without_a_factor_is_unaffected(client, app, flow_clients):
    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")
    access = token.get_json()["access_token"]
    assert client.get("/localapi/account", headers=bearer(access)).get_json()["mfa_enabled"] is False
    assert change(access, client=client).status_code == 204


def test_the_openapi_document_describes_otp_and_mfa_required(client, app, flow_clients):
    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")
    doc = client.get("/localapi/openapi.json", headers=bearer(token.get_json()["access_token"])).get_json()
    assert "otp" in doc["components"]["schemas"]["PasswordChange"]["properties"]
    assert "mfa_enabled" in doc["components"]["schemas"]["Account"]["properties"]
    assert MFA_REQUIRED in doc["paths"]["/localapi/password"]["post"]["responses"]["403"]["description"]


def post_password_page(client, **extra):
    page = client.get("/account/password")
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD, **extra}
    return page, client.post("/account/password", data=data)


def test_the_password_page_asks_a_password_session_for_a_code(client, app, seeded):
    AuthActions(client).login()
    secret, _ = enrol_user(app)
    page, refused = post_password_page(client)
    assert 'name="otp"' in page.get_data(as_text=True)
    assert refused.status_code == 403
    assert "Enter a code from your authenticator app" in refused.get_data(as_text=True)
    _, accepted = post_password_page(client, otp=code_at(secret))
    assert accepted.status_code == 200 and "Your password was changed" in accepted.get_data(as_text=True)


def test_the_password_page_after_a_recent_sign_in_with_both_factors(client, app, seeded):
    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    page, accepted = post_password_page(client)
    assert 'name="otp"' not in page.get_data(as_text=True)
    assert accepted.status_code == 200 and "Your password was changed" in accepted.get_data(as_text=True)


def register_passkey(app) -> int:
    """Give alice a passkey as her only second factor; return her id."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import User
    from identity.services import passkeys
    from webauthn_keys import SoftKey

    issuer = "https://id.example.com"
    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        ceremony = passkeys.registration_options(alice_id, issuer)
        passkeys.register(alice_id, issuer, ceremony.state,
                          SoftKey().registration(ceremony.state["challenge"], origin=issuer, rp_id="id.example.com"))
    return alice_id


@pytest.mark.parametrize("path", ["/account/password", "/account/email"])
def test_the_pages_tell_a_passkey_only_user_to_sign_in_with_it_not_to_enter_a_code(client, app, seeded, path):
    """A user whose only second factor is a passkey was shown a code field on the password and
    address pages, and told on submit to "enter a code from your authenticator app": a code they
    can never have. The pages now say to sign in again with the passkey, and count nothing."""
    from identity.extensions import db
    from identity.models import User

    AuthActions(client).login()
    alice_id = register_passkey(app)
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="otp"' not in html and 'name="change-otp"' not in html
    assert "sign in again with your passkey" in html
    token = re.search(r'csrf_token"[^>]*value="([^"]+)"', html).group(1)  # any form's: one per session
    data = {"csrf_token": token, "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD}
    if path == "/account/email":
        data = {"change-csrf_token": data["csrf_token"], "change-email": "alice.new@example.com",
                "change-current_password": ALICE_PASSWORD}
    refused = client.post(path, data=data)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 403
    assert "authenticator app" not in body and "sign in again with your passkey" in body
    with app.app_context():
        user = db.session.get(User, alice_id)
        assert user.failed_attempts == 0 and user.pending_email is None


def test_the_second_step_asks_a_passkey_only_user_for_the_passkey_not_a_code(client, app, seeded):
    """The second step showed a user whose only second factor is a passkey "Code from your
    authenticator app", autofocused, and counted every code they tried toward the lockout: a
    code they can never have. It now asks for the passkey, and a code sent anyway counts nothing."""
    from identity.extensions import db
    from identity.models import User

    alice_id = register_passkey(app)
    first = AuthActions(client).login()
    assert first.status_code == 302 and "/account/login/mfa" in first.headers["Location"]
    page = client.get("/account/login/mfa")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="code"' not in html and "Use a passkey" in html
    refused = client.post("/account/login/mfa", data={"csrf_token": csrf_token(html), "code": "123456"})
    assert refused.status_code == 400 and "passkey" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, alice_id).failed_attempts == 0
