"""The passkey endpoints over HTTP: CSRF on every POST, a fresh sign-in to register or remove,
the challenge kept in the session and spent by one answer, the login page's passkey button
behind PASSKEY_SIGNIN_ENABLED. The test client speaks https://localhost: that is the issuer,
so the RP id is `localhost` and the origin https://localhost."""

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import Passkey, User, UserSession
from identity.services import mfa as mfa_service
from mfa_actions import claims, code_at, enrol_user, post_mfa, sign_in_with_code, step_clock  # noqa: F401
from webauthn_keys import SoftKey, b64url

ORIGIN, RP_ID = "https://localhost", "localhost"


@pytest.fixture
def auth(client, seeded):
    return AuthActions(client)


def token(client, path="/account/login") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def register_over_http(client, key: SoftKey, name="Laptop"):
    csrf = token(client, "/account/mfa")
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf})
    assert options.status_code == 200 and options.mimetype == "application/json"
    challenge = options.get_json()["challenge"]
    return client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                       json={"credential": key.registration(challenge, origin=ORIGIN, rp_id=RP_ID), "name": name})


def passkey_sign_in(client, key: SoftKey, query: str = ""):
    csrf = token(client, "/account/login" + query)
    challenge = client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    answer = key.assertion(challenge, origin=ORIGIN, rp_id=RP_ID)
    return client.post("/account/login/passkey" + query, data={"csrf_token": csrf, "credential": answer}), answer


def test_register_then_sign_in_over_http(client, auth, app):
    auth.login()
    key = SoftKey()
    created = register_over_http(client, key)
    assert created.status_code == 201 and created.get_json()["name"] == "Laptop"
    page = client.get("/account/mfa").get_data(as_text=True)
    assert "Laptop" in page and "Remove the passkey Laptop" in page
    auth.logout()

    signed_in, answer = passkey_sign_in(client, key)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    # the challenge was spent: the same answer again is refused
    again = client.post("/account/login/passkey", data={"csrf_token": token(client), "credential": answer})
    assert again.status_code == 400 and "expired" in again.get_data(as_text=True)


def test_the_pending_authorization_request_is_resumed(client, auth):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    authorize = client.get("/connect/authorize?client_id=spa&response_type=code&scope=openid&"
                           "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&state=s&nonce=n&"
                           "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuHeDyyomLc&code_challenge_method=S256")
    login_url = authorize.headers["Location"]
    query = login_url[login_url.index("?"):]
    signed_in, _ = passkey_sign_in(client, key, query)
    assert signed_in.status_code == 302
    resumed = signed_in.headers["Location"]
    assert resumed.startswith("/connect/authorize?client_id=spa&") and "state=s&" in resumed
    consent = client.get(resumed)  # the request goes on where the password sign-in would: consent
    assert consent.status_code == 302 and consent.headers["Location"].startswith("/consent")


def test_posts_without_the_csrf_token_are_refused(client, auth):
    auth.login()
    assert client.post("/account/mfa/passkeys/options").status_code == 400
    assert client.post("/account/mfa/passkeys", json={}).status_code == 400
    assert client.post("/account/login/passkey/options").status_code == 400
    assert client.post("/account/login/passkey", data={"credential": "{}"}).status_code == 400


def test_registration_needs_a_signed_in_user(client, seeded):
    csrf = token(client)
    for path in ("/account/mfa/passkeys/options", "/account/mfa/passkeys", "/account/mfa/passkeys/1/remove"):
        answer = client.post(path, headers={"X-CSRFToken": csrf})
        assert answer.status_code == 302 and "/account/login" in answer.headers["Location"]
    assert client.get("/account/mfa/passkeys").status_code == 302


def test_a_refused_registration_is_json_400_and_stores_nothing(client, auth, app):
    auth.login()
    csrf = token(client, "/account/mfa")
    challenge = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    answer = SoftKey().registration(challenge, origin="https://evil.example", rp_id=RP_ID)
    refused = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, json={"credential": answer})
    assert refused.status_code == 400 and "could not be verified" in refused.get_json()["error"]
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


# the last one nested past the json module's recursion limit (RecursionError, not a ValueError)
@pytest.mark.parametrize("body", ["[1]", '"text"', "5", "null", "{", "[" * 5_000])
def test_a_registration_body_that_is_not_a_json_object_is_a_400(client, auth, app, body):
    auth.login()
    csrf = token(client, "/account/mfa")
    assert client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).status_code == 200
    refused = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, data=body,
                          content_type="application/json")
    assert refused.status_code == 400 and "could not be verified" in refused.get_json()["error"]
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


def test_a_password_only_session_adds_no_passkey_once_the_user_has_a_second_factor(client, auth, app, step_clock):
    """A session signed in with the password alone (before the owner set up an app elsewhere)
    would otherwise add its own passkey, which then signs in alone: the password page's rule."""
    auth.login()
    csrf = token(client, "/account/mfa")
    challenge = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    secret, _ = enrol_user(app)  # after the options: the registration itself is refused too
    refused = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                          json={"credential": SoftKey().registration(challenge, origin=ORIGIN, rp_id=RP_ID)})
    assert refused.status_code == 403 and "sign in again" in refused.get_json()["error"]
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf})
    assert options.status_code == 403 and "challenge" not in options.get_json()
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []

    recent = app.test_client()
    sign_in_with_code(recent, secret)
    assert register_over_http(recent, SoftKey()).status_code == 201


def test_a_password_only_session_sets_up_no_app_once_the_user_has_a_passkey(client, auth, app):
    auth.login()
    assert register_over_http(client, SoftKey()).status_code == 201  # the first factor: nothing to prove
    refused = post_mfa(client, "start")
    assert refused.status_code == 403 and "sign in again" in refused.get_data(as_text=True)
    assert 'id="totp-secret"' not in refused.get_data(as_text=True)


def test_removing_someone_elses_passkey_is_404(client, auth, app):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302  # a sign-in with the second factor
    with app.app_context():
        passkey_id = db.session.scalar(select(Passkey.id))
    csrf = token(client, "/account/mfa")
    assert client.post(f"/account/mfa/passkeys/{passkey_id + 1}/remove", data={"csrf_token": csrf}).status_code == 404
    removed = client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


def test_a_password_only_session_removes_no_passkey(client, auth, app):
    """A session signed in with the password alone (say, before the owner added the passkey) may
    not take away the factor that now guards the account; a sign-in with it may."""
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    with app.app_context():
        passkey_id = db.session.scalar(select(Passkey.id))
    refused = client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": token(client, "/account/mfa")})
    assert refused.status_code == 303
    assert "sign in again" in client.get(refused.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Passkey.id)) == passkey_id
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302
    removed = client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": token(client, "/account/mfa")})
    assert removed.status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []


def test_the_login_page_offers_a_passkey(client, seeded):
    page = client.get("/account/login").get_data(as_text=True)
    assert "Sign in with a passkey" in page and "js/passkeys.js" in page


@pytest.mark.parametrize("app_config", [{"PASSKEY_SIGNIN_ENABLED": False}])
def test_passkey_sign_in_can_be_turned_off(client, seeded):
    page = client.get("/account/login").get_data(as_text=True)
    assert "Sign in with a passkey" not in page and "passkeys.js" not in page
    csrf = csrf_token(page)
    assert client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).status_code == 404
    assert client.post("/account/login/passkey", data={"csrf_token": csrf, "credential": "{}"}).status_code == 404


def session_amr(app) -> list[str]:
    """The methods (amr) of the live sessions, oldest first."""
    with app.app_context():
        return [row.amr for row in db.session.scalars(
            select(UserSession).where(UserSession.revoked_at.is_(None)).order_by(UserSession.id))]


def test_passwordless_sign_in_records_the_passkey_and_mfa(client, auth, app):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302
    assert session_amr(app) == ["hwk mfa"]


def test_with_a_passkey_the_password_asks_for_the_second_step_and_a_passkey_finishes_it(client, auth, app):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()

    password = auth.login()
    assert password.status_code == 302 and password.headers["Location"].startswith("/account/login/mfa")
    page = client.get("/account/login/mfa").get_data(as_text=True)
    assert "Use a passkey" in page and "/account/login/mfa/passkey" in page
    csrf = csrf_token(page)
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.credential_id)]
    answer = key.assertion(options["challenge"], origin=ORIGIN, rp_id=RP_ID, flags=0x01)  # presence only
    finished = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer})
    assert finished.status_code == 302 and finished.headers["Location"] == "/"
    assert session_amr(app) == ["pwd hwk mfa"]
    assert "Signed in as" in client.get("/").get_data(as_text=True)


def test_the_second_step_with_a_passkey_needs_the_password_first(client, seeded):
    csrf = token(client)
    refused = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf})
    assert refused.status_code == 400
    answer = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": "{}"})
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/account/login")


def test_a_wrong_passkey_on_the_second_step_is_refused_and_counted(client, auth, app):
    auth.login()
    assert register_over_http(client, SoftKey()).status_code == 201
    auth.logout()
    auth.login()
    csrf = token(client, "/account/login/mfa")
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    stranger = SoftKey().assertion(options["challenge"], origin=ORIGIN, rp_id=RP_ID)
    refused = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": stranger})
    assert refused.status_code == 400 and "could not be verified" in refused.get_data(as_text=True)
    assert "Signed in as" not in client.get("/").get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 1


def test_the_pending_authorization_request_survives_the_password_and_the_passkey(client, auth):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    pending = ("/connect/authorize?client_id=spa&response_type=code&scope=openid&"
               "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&state=s2&nonce=n&"
               "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuHeDyyomLc&code_challenge_method=S256")
    step = auth.login(return_url=pending).headers["Location"]
    assert step.startswith("/account/login/mfa?")
    query = step[step.index("?"):]
    csrf = token(client, "/account/login/mfa" + query)
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    answer = key.assertion(options["challenge"], origin=ORIGIN, rp_id=RP_ID)
    finished = client.post("/account/login/mfa/passkey" + query, data={"csrf_token": csrf, "credential": answer})
    assert finished.status_code == 302 and finished.headers["Location"] == pending


def test_a_nul_in_the_pending_client_id_is_no_client_to_the_passkey_sign_ins(client, auth):
    """PostgreSQL refuses a NUL in a text: a refused and a right passkey, alone or as the second
    step, audit their sign-in with no client rather than fail (a 503)."""
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    query = "?" + urlencode({"returnUrl": "/connect/authorize?client_id=s%00pa&response_type=code"})
    stranger, _ = passkey_sign_in(client, SoftKey(), query)
    assert stranger.status_code == 400
    signed_in, _ = passkey_sign_in(client, key, query)
    assert signed_in.status_code == 302
    auth.logout()
    assert auth.login(return_url="/connect/authorize?client_id=s%00pa").status_code == 302
    csrf = token(client, "/account/login/mfa" + query)
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    answer = key.assertion(options["challenge"], origin=ORIGIN, rp_id=RP_ID)
    finished = client.post("/account/login/mfa/passkey" + query, data={"csrf_token": csrf, "credential": answer})
    assert finished.status_code == 302

def test_tokens_of_a_passkey_sign_in_say_hwk_and_mfa(client, auth, app, flow_clients):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302
    oauth = OAuthActions(client)
    body = oauth.code_flow(client_id="web", scope="openid profile", nonce="n-pk")[0].get_json()
    for jwt in (body["id_token"], body["access_token"]):
        assert claims(jwt)["amr"] == ["hwk", "mfa"]
        assert claims(jwt)["acr"] == "mfa"
    # a passwordless session satisfies acr_values=mfa without asking again
    again = oauth.authorize(client_id="spa", acr_values="mfa", code_challenge="x" * 43, code_challenge_method="S256")
    assert "/account/login" not in again.headers.get("Location", "")


def test_a_synced_passkey_is_swk_in_the_tokens(client, auth, app, flow_clients):
    auth.login()
    key = SoftKey(backup_eligible=True)
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302
    body = OAuthActions(client).code_flow(client_id="web", scope="openid", nonce="n-swk")[0].get_json()
    assert claims(body["id_token"])["amr"] == ["swk", "mfa"]


def test_the_second_step_with_a_passkey_is_in_the_tokens(client, auth, app, flow_clients):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    auth.login()
    csrf = token(client, "/account/login/mfa")
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    answer = key.assertion(options["challenge"], origin=ORIGIN, rp_id=RP_ID)
    assert client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer}).status_code == 302
    body = OAuthActions(client).code_flow(client_id="web", scope="openid", nonce="n-2fa")[0].get_json()
    assert claims(body["id_token"])["amr"] == ["pwd", "hwk", "mfa"]
    assert claims(body["id_token"])["acr"] == "mfa"


def test_the_local_api_says_mfa_enabled_for_a_passkey(client, auth, app, flow_clients):
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302
    body = OAuthActions(client).code_flow(client_id="web", scope="openid IdentityServerApi", nonce="n-api")[0].get_json()
    account = client.get("/localapi/account", headers={"Authorization": "Bearer " + body["access_token"]})
    assert account.status_code == 200 and account.get_json()["mfa_enabled"] is True


PENDING_SPA = ("/connect/authorize?client_id=spa&response_type=code&scope=openid&"
               "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&state=s3&nonce=n&"
               "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuHeDyyomLc&code_challenge_method=S256")
FORM_RE = re.compile(r'<form class="form" method="post"(?: action="([^"]*)")?>')


def first_form_target(html: str, page_url: str) -> str:
    """Where the browser posts the page's first form: its action, or the page's own URL without one."""
    match = FORM_RE.search(html)
    assert match, "no form on the page"
    return unescape(match.group(1)) if match.group(1) is not None else page_url


def test_after_a_refused_passkey_the_password_form_still_signs_in_and_resumes_the_request(client, auth):
    """A refused passkey (one this server does not know: removed here, still on the device) shows
    the sign-in page again, served at the passkey endpoint's URL: its password form must still go
    to the password sign-in, with the pending request, not post the password to the passkey
    endpoint (which refuses it for want of a credential)."""
    query = "?" + urlencode({"returnUrl": PENDING_SPA})
    refused, _ = passkey_sign_in(client, SoftKey(), query)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "could not be verified" in html
    forgot = re.compile(r'href="(/account/forgot-password[^"]*)"')
    login_page = client.get("/account/login" + query).get_data(as_text=True)
    assert forgot.search(html).group(1) == forgot.search(login_page).group(1)  # the pending request is kept there too
    target = first_form_target(html, "/account/login/passkey" + query)
    signed_in = client.post(target, data={"csrf_token": csrf_token(html), "username": "alice",
                                          "password": ALICE_PASSWORD})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == PENDING_SPA, signed_in.status_code


def test_after_a_refused_passkey_on_the_second_step_the_code_form_still_finishes_it(client, auth, app, step_clock):
    secret, _ = enrol_user(app)
    step = auth.login(return_url=PENDING_SPA).headers["Location"]
    query = step[step.index("?"):]
    csrf = token(client, "/account/login/mfa" + query)
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf})
    challenge = options.get_json()["challenge"] if options.status_code == 200 else "AAAA"
    stranger = SoftKey().assertion(challenge, origin=ORIGIN, rp_id=RP_ID)
    refused = client.post("/account/login/mfa/passkey" + query, data={"csrf_token": csrf, "credential": stranger})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    target = first_form_target(html, "/account/login/mfa/passkey" + query)
    finished = client.post(target, data={"csrf_token": csrf_token(html), "code": code_at(secret)})
    assert finished.status_code == 302 and finished.headers["Location"] == PENDING_SPA, finished.status_code


def test_a_sign_in_with_a_second_factor_or_a_passkey_is_named_after_its_client(client, auth, app, step_clock):
    """docs/sessions.md: a browser session is named after the client whose authorization request
    the sign-in began at, as the password-only sign-in records it; so too a sign-in finished with
    a code, and one with a passkey alone."""
    secret, _ = enrol_user(app)
    step = auth.login(return_url=PENDING_SPA).headers["Location"]
    finished = client.post(step, data={"csrf_token": token(client, step), "code": code_at(secret)})
    assert finished.status_code == 302 and finished.headers["Location"] == PENDING_SPA
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    signed_in, _ = passkey_sign_in(client, key, "?" + urlencode({"returnUrl": PENDING_SPA}))
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == PENDING_SPA
    with app.app_context():
        assert db.session.scalars(select(UserSession.client_id).order_by(UserSession.id)).all() == ["spa", "spa"]


def _sign_in_ago(app, seconds: int) -> None:
    """Every live browser session signed in `seconds` ago (its cookie still live: only auth_time moves)."""
    from sqlalchemy import update

    with app.app_context():
        db.session.execute(update(UserSession).values(auth_time=UserSession.auth_time - seconds))
        db.session.commit()


def test_a_first_sign_in_method_needs_a_recent_sign_in(client, auth, app, step_clock):
    """A passkey signs in alone and outlives a password change or reset; an app locks the owner
    out of their own sign-in. So a session signed in long ago (a browser left open, a cookie taken)
    adds neither to an account that has no second factor yet: the person signs in again first, as
    the password and address pages ask for the current password (ASVS 4.0.3, 3.7.1)."""
    auth.login()
    _sign_in_ago(app, app.config["MFA_RECENT_SECONDS"] + 60)
    csrf = token(client, "/account/mfa")
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf})
    assert options.status_code == 403 and "sign in again" in options.get_json()["error"]
    started = post_mfa(client, "start")
    assert started.status_code == 403 and "sign in again" in started.get_data(as_text=True)
    assert 'id="totp-secret"' not in started.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []
        assert not mfa_service.has_second_factor(db.session.scalar(select(User.id).where(User.username == "alice")))

    auth.login()  # signed in again: now it may
    assert register_over_http(client, SoftKey()).status_code == 201


def test_a_removal_of_another_users_passkey_is_refused_and_recorded(client, app, flow_clients):
    """Passkey ids are small integers, so a removal naming another user's is an access-control
    probe: refused (404, the answer for a passkey removed already), and recorded, as every failed
    access-control decision is (ASVS 4.0.3, 7.2.2); one removed already is recorded as such."""
    from conftest import BOB_PASSWORD
    from identity.models import AuditEvent

    bob = app.test_client()
    AuthActions(bob).login("bob", BOB_PASSWORD)
    assert register_over_http(bob, SoftKey()).status_code == 201
    with app.app_context():
        bobs = db.session.scalar(select(Passkey.id))
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
    AuthActions(client).login()
    csrf = token(client, "/account/mfa")
    assert client.post(f"/account/mfa/passkeys/{bobs}/remove", data={"csrf_token": csrf}).status_code == 404
    assert client.post(f"/account/mfa/passkeys/{bobs + 1}/remove", data={"csrf_token": csrf}).status_code == 404
    with app.app_context():
        assert db.session.scalar(select(Passkey.id)) == bobs
        refused = [(e.user_id, e.detail) for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "passkey_removal_refused").order_by(AuditEvent.id))]
    assert refused == [(alice_id, {"passkey_id": bobs, "reason": "not_yours"}),
                       (alice_id, {"passkey_id": bobs + 1, "reason": "no_such_passkey"})]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_SENSITIVE": "3 per minute"}])
def test_codes_tried_to_remove_a_passkey_are_rate_limited_per_address(client, auth, app):
    """Removing the authenticator app on /account/mfa takes a code under the sign-in form's limit
    per client address; removing a passkey takes the same code and had no limit: codes could be
    tried there as fast as the lockout let them, from any number of sessions of the account."""
    auth.login()
    assert register_over_http(client, SoftKey()).status_code == 201
    with app.app_context():
        passkey_id = db.session.scalar(select(Passkey.id))
    csrf = token(client, "/account/mfa")
    answers = [client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": csrf, "otp": "000000"})
               for _ in range(4)]
    assert [answer.status_code for answer in answers] == [303, 303, 303, 429], [a.status_code for a in answers]
    assert int(answers[-1].headers["Retry-After"]) > 0
    with app.app_context():
        assert db.session.scalar(select(Passkey.id)) == passkey_id


def test_a_registration_sent_again_once_it_succeeded_says_the_passkey_is_registered(client, auth, app):
    """The page's request that registers a new passkey, sent again (its answer lost, a retry):
    the first made the passkey, the user's first second factor, and the second was answered 403
    "sign in again with your second factor", as a session adding a factor without one would be."""
    auth.login()
    csrf = token(client, "/account/mfa")
    challenge = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    body = {"credential": SoftKey().registration(challenge, origin=ORIGIN, rp_id=RP_ID), "name": "Laptop"}
    assert client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, json=body).status_code == 201
    again = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, json=body)
    assert again.status_code == 400 and again.get_json()["error"] == "This passkey is already registered."
    with app.app_context():
        assert [passkey.name for passkey in db.session.scalars(select(Passkey))] == ["Laptop"]
    another = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},  # a new key still needs the factor
                          json={"credential": SoftKey().registration(challenge, origin=ORIGIN, rp_id=RP_ID)})
    assert another.status_code == 403 and "sign in again" in another.get_json()["error"]
