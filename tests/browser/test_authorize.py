"""The authorization-code + PKCE flow of the `spa` client in a real browser: sign in, consent,
land on the client's redirect URI, and redeem the code there (as the app would, with requests).

Nothing listens on http://127.0.0.1:8080. A route answers the browser's requests to it with a
tiny callback page, so the test reads the code from the URL the browser landed on. The route
catches the redirect that ends a form post (consent, sign-in): Chromium restarts that navigation
and the restarted request is routed, so wait for the URL, not for the navigation (whose first
attempt fails). A plain GET that redirects to the client (authorize with consent remembered) is
not routed; there the test takes the URL of the request the browser made, which fails to
connect, as a browser with no app running would.
"""

import secrets
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from actions import pkce_pair, redirect_params

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

CLIENT_ID = "spa"
SPA_ORIGIN = "http://127.0.0.1:8080"
REDIRECT_URI = "http://127.0.0.1:8080/callback"
CALLBACK_PAGE = "<!doctype html><title>SPA callback</title><h1>Callback</h1>"


@pytest.fixture
def spa_callback(page):
    """Serve the SPA's callback page; record the URLs on 127.0.0.1:8080 the browser asked for."""
    requested = []
    page.on("request", lambda request: request.url.startswith(SPA_ORIGIN) and requested.append(request.url))
    page.route(SPA_ORIGIN + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body=CALLBACK_PAGE))
    return requested


def goto_expecting_client_redirect(ui, url: str) -> str:
    """Open a URL that redirects straight to the SPA; return the callback URL the browser requested."""
    with ui.page.expect_request(lambda request: request.url.startswith(REDIRECT_URI)) as callback:
        try:
            ui.page.goto(ui.url(url))
        except PlaywrightError as err:  # nothing listens on 8080 (see the module docstring)
            if "ERR_CONNECTION_REFUSED" not in str(err):
                raise
            # Let Chromium finish showing its error page, or it interrupts the next navigation.
            ui.page.wait_for_url(lambda url: url.startswith("chrome-error:"), wait_until="commit")
    return callback.value.url


def authorize_url(scope="openid profile"):
    """An authorization request of the SPA; returns (path with query, state, nonce, code verifier)."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {"client_id": CLIENT_ID, "response_type": "code", "scope": scope, "redirect_uri": REDIRECT_URI,
              "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
    return "/connect/authorize?" + urlencode(params), state, nonce, verifier


def start_authorization(ui, scope="openid profile"):
    """Open /connect/authorize for the SPA; return (state, nonce, code verifier)."""
    url, state, nonce, verifier = authorize_url(scope)
    ui.goto(url)
    return state, nonce, verifier


def sign_in_and_reach_consent(ui, seeded, scope="openid profile"):
    user = seeded["users"][0]
    state, nonce, verifier = start_authorization(ui, scope)
    assert "/account/login" in ui.page.url, "an anonymous browser is sent to sign in first"
    assert "Single-Page App" in ui.page.inner_text("main"), "the login page names the client"
    ui.fill_sign_in(user["username"], user["password"])
    ui.submit()
    assert "/consent" in ui.page.url, ui.page.url
    return state, nonce, verifier


def redeem(base_url, code, verifier):
    return requests.post(base_url + "/connect/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID, "code_verifier": verifier})


def test_code_flow_with_pkce_ends_at_the_client_and_the_code_works(ui, seeded, spa_callback, live_server):
    state, nonce, verifier = sign_in_and_reach_consent(ui, seeded, scope="openid profile email")
    ui.assert_looks_finished()
    consent_text = ui.page.inner_text("main")
    assert "Single-Page App" in consent_text
    for scope in ("openid", "profile", "email"):
        assert scope in consent_text, f"the consent page lists {scope}"

    ui.page.get_by_role("button", name="Allow").click()
    ui.page.wait_for_url(REDIRECT_URI + "?**")
    assert ui.page.inner_text("h1") == "Callback"
    params = redirect_params(ui.page.url)
    assert params["state"] == state
    assert "error" not in params and params["code"]
    assert set(spa_callback) == {ui.page.url}, "the browser went to the client, with one code"

    token = redeem(live_server.url, params["code"], verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"].lower() == "bearer" and body["access_token"] and body["id_token"]
    assert "refresh_token" not in body, "spa is not allowed offline access"
    assert token.headers["Cache-Control"] == "no-store"

    userinfo = requests.get(live_server.url + "/connect/userinfo", timeout=10,
                            headers={"Authorization": "Bearer " + body["access_token"]})
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["name"] == seeded["users"][0]["name"]

    replay = redeem(live_server.url, params["code"], verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", "a code works once"


def test_code_is_refused_with_the_wrong_verifier(ui, seeded, spa_callback, live_server):
    sign_in_and_reach_consent(ui, seeded)
    ui.page.get_by_role("button", name="Allow").click()
    ui.page.wait_for_url(REDIRECT_URI + "?**")
    code = redirect_params(ui.page.url)["code"]
    wrong = redeem(live_server.url, code, pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text


def test_consent_denied_returns_access_denied_to_the_client(ui, seeded, spa_callback, live_server):
    state, _, _ = sign_in_and_reach_consent(ui, seeded)
    ui.page.get_by_role("button", name="Deny").click()
    ui.page.wait_for_url(REDIRECT_URI + "?**")
    params = redirect_params(ui.page.url)
    assert params["error"] == "access_denied"
    assert params["state"] == state
    assert "code" not in params


def test_remembered_consent_is_listed_on_the_grants_page_and_revoking_removes_it(ui, seeded, spa_callback):
    sign_in_and_reach_consent(ui, seeded)
    ui.page.get_by_label("Remember my decision").check()
    decision = ui.submit_and_catch_post("button[value=allow]", wait_for_page=False)
    assert decision.status == 303 and decision.headers["location"].startswith(REDIRECT_URI + "?code=")
    ui.page.wait_for_url(REDIRECT_URI + "?**")

    # Remembered: the next authorization goes straight back to the client with a code.
    url, state, _, _ = authorize_url()
    params = redirect_params(goto_expecting_client_redirect(ui, url))
    assert params["state"] == state and params["code"]

    ui.goto("/account/grants")
    ui.assert_looks_finished()
    grants = ui.page.locator(".grant")
    assert grants.count() == 1
    assert "Single-Page App" in grants.first.inner_text()

    ui.submit("button[aria-label='Revoke access for Single-Page App']")
    assert ui.page.url == ui.url("/account/grants")
    assert "Access revoked." in ui.alert_text()
    assert ui.page.locator(".grant").count() == 0
    assert "No apps have access" in ui.page.inner_text("main")
    ui.assert_looks_finished()

    # Revoked: consent is asked again.
    start_authorization(ui)
    assert "/consent" in ui.page.url, ui.page.url


def test_error_page_for_an_unregistered_redirect_uri_does_not_redirect(ui, seeded, spa_callback):
    ui.goto("/connect/authorize?" + urlencode({"client_id": CLIENT_ID, "response_type": "code", "scope": "openid",
                                              "redirect_uri": "http://127.0.0.1:8080/elsewhere", "state": "s",
                                              "code_challenge": pkce_pair()[1], "code_challenge_method": "S256"}))
    assert spa_callback == [], "never sent to an unregistered redirect URI"
    assert ui.page.url.startswith(ui.base_url)
    assert ui.page.locator(".status-badge").is_visible()
    ui.assert_looks_finished()


def test_sign_in_completes_a_pending_authorization_already_consented_to(ui, seeded, spa_callback):
    """The login form's POST ends at the client (no consent page): the sign-in answers the request."""
    user = seeded["users"][0]
    sign_in_and_reach_consent(ui, seeded)
    ui.page.get_by_label("Remember my decision").check()
    ui.submit_and_catch_post("button[value=allow]", wait_for_page=False)
    ui.page.wait_for_url(REDIRECT_URI + "?**")
    ui.page.context.clear_cookies()  # a new visit: signed out, consent remembered on the server

    state, _, _ = start_authorization(ui)
    assert "/account/login" in ui.page.url
    ui.fill_sign_in(user["username"], user["password"])
    ui.page.get_by_role("button", name="Sign in", exact=True).click()  # not "Sign in with a passkey"
    ui.page.wait_for_url(REDIRECT_URI + "?**")
    params = redirect_params(ui.page.url)
    assert params["state"] == state and params["code"]


def test_end_session_confirmed_returns_to_the_registered_address(ui, seeded, spa_callback):
    """RP-initiated logout without id_token_hint asks first; the confirmation's POST returns to the client."""
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    ui.goto("/connect/endsession?" + urlencode({"client_id": CLIENT_ID, "state": "bye-123",
                                                "post_logout_redirect_uri": "http://127.0.0.1:8080/"}))
    assert ui.page.get_by_role("heading", name="Do you want to sign out?").is_visible()
    ui.assert_looks_finished()
    ui.page.get_by_role("button", name="Sign out").last.click()
    ui.page.wait_for_url("http://127.0.0.1:8080/?**")
    assert redirect_params(ui.page.url) == {"state": "bye-123"}
    ui.goto("/")
    assert ui.signed_in_as() is None
