"""The browser-facing pages reviewed as an attacker with a browser would come at them: the
session cookie's renewal, caching of pages that show the signed-in user, a passkey answer
replayed with an old cookie, an old ID token as a logout hint, sign-out from the pages that
send no Referer."""

from urllib.parse import urlsplit

from actions import AuthActions, OAuthActions, redirect_params
from conftest import ALICE_PASSWORD, HttpsClient, csrf_token
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401
from test_passkeys_web import ORIGIN, RP_ID, register_over_http, token
from webauthn_keys import SoftKey

NEW_PASSWORD = "violet-anchor-meadow-482"
SESSION, REMEMBER = "idsrv.session", "idsrv.remember"


def _copy_of(app, cookies: dict):
    """Another browser that holds copies of these cookies (stolen or planted)."""
    app.test_client_class = HttpsClient
    other = app.test_client()
    for name, value in cookies.items():
        other.set_cookie(name, value, domain="localhost")
    return other


def _change_password(client):
    page = client.get("/account/password").get_data(as_text=True)
    return client.post("/account/password", data={
        "csrf_token": csrf_token(page), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})


def test_a_password_change_renews_the_session_cookie(app, client, seeded):
    AuthActions(client).login(remember=True)
    assert client.get("/diagnostics").status_code == 200
    before = {name: client.get_cookie(name).value for name in (SESSION, REMEMBER)}

    response = _change_password(client)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert client.get("/diagnostics").status_code == 200, "the browser that changed it stays signed in"
    for name, value in before.items():
        copy = _copy_of(app, {name: value})
        assert copy.get("/diagnostics").status_code == 302, f"a copy of {name} from before the change still signs in"
    # the renewed remember-me cookie alone still brings the session back
    assert _copy_of(app, {REMEMBER: client.get_cookie(REMEMBER).value}).get("/diagnostics").status_code == 200


def test_the_home_page_of_a_signed_in_user_is_not_stored(client, seeded):
    """The home page shows the signed-in user's name (and the sign-out form's CSRF token), and
    after the sign-in sets the session cookie: no cache may keep it (a shared computer's Back
    button after signing out, a proxy)."""
    AuthActions(client).login()
    for _ in range(2):  # the first sets the cookie (the CSRF token is new), the second does not
        response = client.get("/")
        assert "Alice Example" in response.get_data(as_text=True)
        assert response.headers.get("Cache-Control") == "no-store", response.headers
    # what is the same for everyone stays cacheable
    assert "no-store" not in client.get("/static/site.css").headers.get("Cache-Control", "")


def _registered_key(client) -> tuple[AuthActions, SoftKey]:
    """alice with a passkey (registered over HTTP), signed out again."""
    auth = AuthActions(client)
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    return auth, key


def test_a_passkey_answer_replayed_with_the_cookie_it_came_with_signs_nobody_in(client, app, seeded):
    _, key = _registered_key(client)
    csrf = token(client)
    challenge = client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    sent_with = client.get_cookie(SESSION).value  # the cookie the browser sends with its answer
    answer = key.assertion(challenge, origin=ORIGIN, rp_id=RP_ID, count_step=0)  # a synced passkey counts nothing
    assert client.post("/account/login/passkey", data={"csrf_token": csrf, "credential": answer}).status_code == 302

    replay = _copy_of(app, {SESSION: sent_with}).post("/account/login/passkey",
                                                      data={"csrf_token": csrf, "credential": answer})

    assert replay.status_code == 400, "the same answer and cookie again started a second session"


def test_a_second_step_passkey_answer_replayed_with_its_cookie_signs_nobody_in(client, app, seeded):
    auth, key = _registered_key(client)
    assert auth.login().headers["Location"].startswith("/account/login/mfa")
    csrf = token(client, "/account/login/mfa")
    challenge = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    sent_with = client.get_cookie(SESSION).value
    answer = key.assertion(challenge, origin=ORIGIN, rp_id=RP_ID, count_step=0)
    assert client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer}).status_code == 302

    copy = _copy_of(app, {SESSION: sent_with})
    replay = copy.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer})

    # the finished half-signed-in state is refused first: the sign-in starts again from the password
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/account/login")
    assert "/mfa" not in replay.headers["Location"]
    assert copy.get("/diagnostics").status_code == 302, "the same answer and cookie again finished a second sign-in"

def test_a_copy_of_the_half_signed_in_cookie_finishes_no_second_sign_in(client, app, seeded, step_clock):
    """The state between a right password and the second step lives in the signed cookie. A copy
    taken before the second step (a shared computer, a stolen cookie) finished a sign-in of its
    own afterwards with any other code (a recovery code, the next step's), without the password,
    for MFA_PENDING_SECONDS: the second step that finishes the state now spends it."""
    secret, recovery = enrol_user(app)
    assert password_step(client).headers["Location"].startswith("/account/login/mfa")
    before = client.get_cookie(SESSION).value
    assert second_step(client, code_at(secret)).status_code == 302
    assert client.get("/diagnostics").status_code == 200

    copy = _copy_of(app, {SESSION: before})
    csrf = csrf_token(copy.get("/account/login").get_data(as_text=True))
    posted = copy.post("/account/login/mfa", data={"csrf_token": csrf, "code": recovery[0]})

    assert copy.get("/diagnostics").status_code == 302, "a copy of the cookie signed in without the password"
    assert posted.status_code == 302 and posted.headers["Location"].startswith("/account/login"), posted.status_code
    assert "/mfa" not in posted.headers["Location"], "sent back to the second step it finished already"


def test_a_copy_of_the_half_signed_in_cookie_finishes_nothing_with_a_passkey(client, app, seeded):
    auth, key = _registered_key(client)
    assert auth.login().headers["Location"].startswith("/account/login/mfa")
    csrf = token(client, "/account/login/mfa")
    before = client.get_cookie(SESSION).value
    challenge = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    answer = key.assertion(challenge, origin=ORIGIN, rp_id=RP_ID, count_step=0)
    assert client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer}).status_code == 302

    copy = _copy_of(app, {SESSION: before})
    options = copy.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf})

    assert options.status_code == 400, "a finished half-signed-in state still asked for a passkey"
    assert copy.get("/diagnostics").status_code == 302


def test_an_id_token_of_an_earlier_session_signs_nobody_out_without_asking(client, flow_clients):
    """RP-Initiated Logout 1.0 section 2: the OP MUST ask when the hint does not belong to the
    current session. An ID token from a session that has ended (a leaked one, since a hint may be
    expired) would otherwise let any page sign the person out of their new session unasked."""
    auth, oauth = AuthActions(client), OAuthActions(client)
    auth.login()
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    old_hint = oauth.token("web", grant_type="authorization_code", code=code,
                           redirect_uri="https://web.example.com/cb").get_json()["id_token"]
    auth.logout()
    auth.login()

    response = client.get("/connect/endsession", query_string={"id_token_hint": old_hint})

    assert response.status_code == 200 and "Do you want to sign out?" in response.get_data(as_text=True)
    assert client.get("/diagnostics").status_code == 200, "signed out by a hint of an earlier session"


def test_the_sign_out_button_works_on_the_pages_that_send_no_referer(client, seeded, mail):
    """The verification page (and the reset page) send no Referer, since their URL holds the
    link's token; a browser then posts the nav's sign-out form without one. Over HTTPS Flask-WTF
    refused every such post ("The referrer header is missing"): a signed-in person who had just
    confirmed their address could not sign out from that page."""
    AuthActions(client).login()
    page = client.get("/account/email").get_data(as_text=True)
    assert client.post("/account/email", data={"send-csrf_token": csrf_token(page)}).status_code == 200
    link = urlsplit(mail.link(mail.wait_for(to="alice@example.com")))
    verified = client.get(link.path + "?" + link.query)
    assert verified.status_code == 200 and verified.headers["Referrer-Policy"] == "no-referrer"
    html = verified.get_data(as_text=True)
    assert 'action="/account/logout"' in html

    # without the form's CSRF token a post signs nobody out (a cross-site form)
    assert client.post("/account/logout", data={}, headers=[]).status_code == 400
    assert client.get("/diagnostics").status_code == 200
    # what the browser sends under that policy: the form's fields, no Referer
    signed_out = client.post("/account/logout", data={"csrf_token": csrf_token(html)}, headers=[])

    assert signed_out.status_code == 200, signed_out.get_data(as_text=True)
    assert client.get("/diagnostics").status_code == 302
