"""A native app's whole life (RFC 8252): registration of each redirect URI kind, the sign-in
through the system browser (code + PKCE), the months of refreshes after it, and its sign-out."""

import json
from urllib.parse import urlencode

import pytest

from actions import AuthActions, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.errors import ValidationFailed
from identity.services.seed import load_seed
from native_review_support import NATIVE, apply, authorize_query, directive, invalid_sources


@pytest.fixture
def native(seeded, app):
    apply(app)


@pytest.mark.parametrize("redirect_uri", ["http://[::1]:51234/cb", "http://127.0.0.1:51234/cb"])
def test_the_sign_in_form_may_end_at_a_loopback_redirect_of_either_address(client, native, redirect_uri):
    """RFC 8252 section 7.3 names http://[::1]:{port} beside 127.0.0.1. The sign-in page listed
    `http://[::1]:51234` in form-action, a source CSP cannot express (its host-source has no
    IP-v6 literal): Chromium ignores it, and the redirect after the sign-in post was blocked, so
    the app never got its code. The form_post page had the same source as its only target."""
    url, _ = authorize_query(redirect_uri)
    login = client.get(url)
    assert login.status_code == 302 and "/account/login" in login.headers["Location"]
    page = client.get(login.headers["Location"])
    sources = directive(page.headers["Content-Security-Policy"], "form-action")
    assert not invalid_sources(sources), f"form-action has sources a browser ignores: {invalid_sources(sources)}"
    assert len(sources) > 1, sources
    posted = client.post(login.headers["Location"], data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "username": "alice", "password": ALICE_PASSWORD})
    assert posted.status_code == 303 and posted.headers["Location"].startswith(redirect_uri + "?code=")

    form_post_url, _ = authorize_query(redirect_uri, response_mode="form_post")
    form_post = client.get(form_post_url)
    assert form_post.status_code == 200
    sources = directive(form_post.headers["Content-Security-Policy"], "form-action")
    assert sources and not invalid_sources(sources) and sources != ["'none'"], sources


@pytest.mark.parametrize("redirect_uri", ["com.example.app:///cb", "myapp://", "msauth.com.Contoso.MyApp://auth"])
def test_the_answer_goes_to_a_private_use_uri_as_registered(client, native, redirect_uri):
    """`myapp://` (Expo's default) and `com.example.app:///cb` are private-use redirect URIs with
    an empty authority. The answer was rebuilt with urlunsplit, which drops an empty authority:
    the code went to `myapp:?code=...` and `com.example.app:/cb?code=...`, URIs the app never
    registered, and a library that waits for a URL starting with its redirect URI (expo-web-browser
    on Android) never sees its answer. Errors and the post-logout redirect went the same way.
    werkzeug also lowercased a scheme or host written with capitals (MSAL's
    `msauth.<bundle id>://auth`, a bundle id such as com.Contoso.MyApp)."""
    AuthActions(client).login()
    url, verifier = authorize_query(redirect_uri)
    answer = client.get(url)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(redirect_uri + "?code="), answer.headers["Location"]
    code = redirect_params(answer.headers["Location"])["code"]
    tokens = client.post("/connect/token", data={"grant_type": "authorization_code", "code": code,
                                                 "client_id": "native-app", "redirect_uri": redirect_uri,
                                                 "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.get_data(as_text=True)

    url, _ = authorize_query(redirect_uri, code_challenge_method="plain")
    error = client.get(url)
    assert error.headers["Location"].startswith(redirect_uri + "?error=invalid_request"), error.headers["Location"]

    signed_out = client.get("/connect/endsession?" + urlencode({
        "id_token_hint": tokens.get_json()["id_token"], "post_logout_redirect_uri": "myapp://", "state": "bye"}))
    assert signed_out.status_code == 302 and signed_out.headers["Location"] == "myapp://?state=bye"


@pytest.mark.database_independent
@pytest.mark.parametrize("uri", ["http://127.0.0.1:8O80/cb", "http://[::1]:99999/cb", "https://app.example.com:44x/cb"])
def test_a_redirect_uri_whose_port_is_not_one_is_refused_at_registration(app, uri):
    """The seed (and `clients add`, which validates the same way) took `http://127.0.0.1:8O80/cb`,
    a typed letter O: the loopback any-port rule cannot read that registration, so every request
    of the app (`http://127.0.0.1:51234/cb`) was refused as unregistered, and the app could never
    sign in. A logout URI with such a port was refused already."""
    client = {**NATIVE, "redirect_uris": [uri]}
    with app.app_context(), pytest.raises(ValidationFailed) as refused:
        load_seed(json.dumps({"clients": [client]}))
    assert "invalid port" in str(refused.value), str(refused.value)


def test_a_hybrid_app_s_web_view_origin_may_be_allowed_for_cors(client, seeded, app):
    """A Capacitor or Cordova app (a native app in RFC 8252's sense: it signs in through the
    system browser) redeems its code with fetch() from its WKWebView, whose Origin header is
    `capacitor://localhost` (`ionic://localhost` for Cordova). The seed refused that origin with
    "is not an origin (scheme://host[:port])", though it is one, as the browser spells it, so the
    token endpoint could never answer the app's preflight."""
    web_view = {**NATIVE, "allowed_cors_origins": ["capacitor://localhost", "ionic://localhost"]}
    apply(app, {"api_scopes": [], "clients": [web_view], "users": []})
    for origin in ("capacitor://localhost", "ionic://localhost"):
        preflight = client.options("/connect/token", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("Access-Control-Allow-Origin") == origin, dict(preflight.headers)
    refused = client.options("/connect/token", headers={"Origin": "capacitor://evil", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in refused.headers


@pytest.mark.database_independent
@pytest.mark.parametrize("origin", ["javascript://localhost", "file://localhost", "capacitor://localhost/app", "//localhost"])
def test_an_origin_no_browser_sends_is_still_refused(app, origin):
    with app.app_context(), pytest.raises(ValidationFailed):
        load_seed(json.dumps({"clients": [{**NATIVE, "allowed_cors_origins": [origin]}]}))
