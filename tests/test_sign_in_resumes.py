"""A sign-in that resumes a pending authorization request answers it itself when nothing more is
needed from the person: four requests (authorize, login page, login POST, token) instead of five.
The answer is the one /connect/authorize gives for the same request, decided by the same code."""

import base64
import json
from urllib.parse import unquote, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import HttpsClient
from identity.extensions import db
from identity.models import AuthorizationCode, UserSession

WEB = {"client_id": "web", "redirect_uri": "https://web.example.com/cb", "response_type": "code", "scope": "openid profile"}


def _return_url(**params) -> str:
    return "/connect/authorize?" + urlencode(params)


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _fresh_client(app):
    app.test_client_class = HttpsClient
    return app.test_client()


def _codes(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


def test_sign_in_answers_a_request_that_needs_no_consent_with_the_code(client, app, flow_clients):
    oauth = OAuthActions(client)
    verifier, challenge = pkce_pair()
    start = oauth.authorize(client_id="native", redirect_uri="com.example.native:/cb", state="st-1",
                            code_challenge=challenge, code_challenge_method="S256", nonce="nn-1")
    assert start.status_code == 302 and start.headers["Location"].startswith("/account/login?returnUrl=")
    login = AuthActions(client).login(return_url=unquote(start.headers["Location"].split("returnUrl=", 1)[1]))
    assert login.status_code == 303
    assert login.headers["Location"].startswith("com.example.native:/cb?")
    params = redirect_params(login.headers["Location"])
    assert params["state"] == "st-1" and params["code"]
    token = oauth.token("native", grant_type="authorization_code", code=params["code"],
                        redirect_uri="com.example.native:/cb", code_verifier=verifier)
    assert token.status_code == 200, token.get_json()
    claims = _claims(token.get_json()["id_token"])
    with app.app_context():
        session = db.session.scalars(select(UserSession)).one()
        assert claims["sid"] == session.public_sid and claims["auth_time"] == session.auth_time
    assert claims["nonce"] == "nn-1"
    assert client.get("/diagnostics").status_code == 200  # and the browser is signed in


def test_sign_in_sends_a_request_that_needs_consent_back_through_the_authorization_endpoint(client, app, flow_clients):
    return_url = _return_url(client_id="spa", redirect_uri="http://127.0.0.1:8080/callback", response_type="code",
                             scope="openid profile", state="c1", code_challenge=pkce_pair()[1], code_challenge_method="S256")
    login = AuthActions(client).login(return_url=return_url)
    assert login.status_code == 302 and login.headers["Location"] == return_url
    assert client.get(return_url).headers["Location"].startswith("/consent?")
    assert _codes(app) == 0


def test_sign_in_answers_form_post_with_the_auto_submitting_page(client, flow_clients):
    login = AuthActions(client).login(return_url=_return_url(**WEB, response_mode="form_post", state="fp-2"))
    html = login.get_data(as_text=True)
    assert login.status_code == 200 and 'action="https://web.example.com/cb"' in html
    assert 'name="code"' in html and 'value="fp-2"' in html
    assert "form-action https://web.example.com" in login.headers["Content-Security-Policy"]
    assert login.headers["Cache-Control"].startswith("no-store")


# Requests whose answer carries no fresh secret, so the two answers can be compared whole.
SAME_ANSWER = {
    "scope not allowed": _return_url(**{**WEB, "scope": "openid admin"}, state="a1"),
    "unknown response mode": _return_url(**WEB, response_mode="carrier-pigeon", state="a2"),
    "query for tokens": _return_url(client_id="implicit", redirect_uri="https://implicit.example.com/cb",
                                    response_type="id_token", scope="openid", nonce="n", response_mode="query", state="a3"),
    "no PKCE for a public client": _return_url(client_id="native", redirect_uri="com.example.native:/cb",
                                               response_type="code", scope="openid", state="a4"),
    "repeated state": _return_url(**WEB, state="a5") + "&state=again",
    "prompt none and consent missing": _return_url(client_id="spa", redirect_uri="http://127.0.0.1:8080/callback",
                                                   response_type="code", scope="openid", prompt="none", state="a6",
                                                   code_challenge=pkce_pair()[1], code_challenge_method="S256"),
    "unsupported response type": _return_url(**{**WEB, "response_type": "token"}, state="a7"),
}


def _after_post(status: int) -> int:
    """The sign-in POST's status for the GET's: a redirect to the client is a 303 after a POST."""
    return 303 if status == 302 else status


@pytest.mark.parametrize("case", sorted(SAME_ANSWER))
def test_sign_in_answers_as_the_authorization_endpoint_would(app, flow_clients, case):
    return_url = SAME_ANSWER[case]
    direct = AuthActions(_fresh_client(app)).login(return_url=return_url)
    browser = _fresh_client(app)
    AuthActions(browser).login()
    through_authorize = browser.get(return_url)
    assert (direct.status_code, direct.headers.get("Location")) == \
        (_after_post(through_authorize.status_code), through_authorize.headers.get("Location"))
    assert "error" in redirect_params(direct.headers["Location"])
    assert _codes(app) == 0


@pytest.mark.parametrize("return_url", [
    _return_url(**{**WEB, "redirect_uri": "https://evil.example.com/cb"}),  # an error page, never a redirect
    _return_url(**WEB, prompt="login"),  # asks for a sign-in again (the return trip drops prompt=login)
    _return_url(**WEB, max_age="0"),  # the same as prompt=login
    _return_url(**WEB, state="nul\x00"),  # refused before the endpoint decides (inputs.py)
    "/connect/authorize",
])
def test_sign_in_leaves_other_answers_to_the_authorization_endpoint(client, app, flow_clients, return_url):
    login = AuthActions(client).login(return_url=return_url)
    assert login.status_code == 302 and login.headers["Location"] == return_url
    assert _codes(app) == 0


def test_sign_in_to_a_plain_local_page_is_unchanged(client, flow_clients):
    login = AuthActions(client).login(return_url="/account/grants")
    assert login.headers["Location"] == "/account/grants"
    assert urlsplit(AuthActions(client).login().headers["Location"]).path == "/"


@pytest.mark.parametrize("query", [
    "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=code&scope=openid&state=%FF%FE",
    "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=code&scope=openid%09profile",
    "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=%22code%5C&scope=openid",
    "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=code&scope=openid&max_age=1e9",
    "client_id=web&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=code&scope=openid&prompt=none%20login",
    "client_id=%FF&redirect_uri=x",
    "client_id=" + "w" * 3000,
    "client_id=we%00b&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb&response_type=code&scope=openid",
    "=&&=x&client_id",
])
def test_hostile_pending_requests_get_the_endpoints_answer_and_never_a_5xx(app, flow_clients, query):
    return_url = "/connect/authorize?" + query
    direct = AuthActions(_fresh_client(app)).login(return_url=return_url)
    assert direct.status_code < 500
    browser = _fresh_client(app)
    AuthActions(browser).login()
    if direct.headers.get("Location") == return_url or "code=" in (direct.headers.get("Location") or ""):
        return  # left to the endpoint, or a code (fresh each time, so not compared)
    through_authorize = browser.get(return_url)
    assert (direct.status_code, direct.headers.get("Location")) == \
        (_after_post(through_authorize.status_code), through_authorize.headers.get("Location"))


NUL_CLIENT = "/connect/authorize?client_id=we%00b&redirect_uri=https%3A%2F%2Fweb.example.com%2Fcb"


def test_a_nul_in_the_pending_client_id_never_reaches_the_database(client, flow_clients):
    """PostgreSQL refuses a NUL in a text (a 503): the sign-in page, a failed sign-in (audited with
    the pending client) and a successful one (the session keeps it) take it as no client at all."""
    assert client.get("/account/login?returnUrl=/connect/authorize%3Fclient_id%3Dmob%2500ile").status_code == 200
    assert AuthActions(client).login(password="not-the-password", return_url=NUL_CLIENT).status_code == 400
    assert AuthActions(client).login(return_url=NUL_CLIENT).status_code == 302


def test_a_sign_in_submitted_twice_answers_the_app_with_a_code_both_times(app, flow_clients):
    """A double-clicked "Sign in" (or a browser that retries the POST) sends the same form twice
    with the same cookies; the browser shows the second answer. Since the sign-in answers with the
    code itself, the second answer found the first's code carrying the request's nonce and sent
    the app error=invalid_request ("Replay attack"). A live code of the same user with that nonce
    is the same person's request again, not a replay: only another user's code refuses it."""
    from conftest import csrf_token

    first, second = _fresh_client(app), _fresh_client(app)
    _, challenge = pkce_pair()
    return_url = _return_url(client_id="native", redirect_uri="com.example.native:/cb", response_type="code",
                             scope="openid", nonce="nn-twice", state="st-2", code_challenge=challenge,
                             code_challenge_method="S256")
    page = first.get("/account/login?" + urlencode({"returnUrl": return_url}))
    for cookie in first._cookies.values():  # the second tab of the same browser: the same cookies
        second.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "bob", "password": "marble-violet-canyon-482"}
    url = "/account/login?" + urlencode({"returnUrl": return_url})
    answers = [first.post(url, data=form), second.post(url, data=form)]
    for answer in answers:
        assert answer.status_code == 303, answer.get_data(as_text=True)
        params = redirect_params(answer.headers["Location"])
        assert "code" in params and params["state"] == "st-2", params
    assert _codes(app) == 2


def _native_request(length: int) -> dict:
    """A signed-out request of `native` whose resume URL (/connect/authorize?<query>) is `length`
    characters long, made so by its state, as a framework that packs its data into state makes it."""
    _, challenge = pkce_pair()
    params = {"client_id": "native", "redirect_uri": "com.example.native:/cb", "response_type": "code",
              "scope": "openid", "code_challenge": challenge, "code_challenge_method": "S256", "state": ""}
    params["state"] = "s" * (length - len(_return_url(**params)))
    assert len(_return_url(**params)) == length
    return params


def _answer_after_sign_in(client, params: dict) -> str:
    """Where the browser ends up for this request: the authorization endpoint's answer, or the
    sign-in page's once the person signs in there."""
    start = client.get(_return_url(**params))
    location = start.headers.get("Location", "")
    if location.startswith("/account/login?"):
        login = AuthActions(client).login(return_url=unquote(location.split("returnUrl=", 1)[1]))
        location = login.headers.get("Location", "")
    return location


@pytest.mark.parametrize("length", [3999, 4000, 4001, 6000])
def test_a_request_too_long_to_resume_after_the_sign_in_is_still_answered_to_the_client(app, flow_clients, length):
    """The sign-in page takes a returnUrl of at most 4,000 characters: a longer pending request was
    dropped after the sign-in (the person sent to the home page, the client never answered). It is
    answered invalid_request at the authorization endpoint instead, with its state; one that fits
    is resumed as before."""
    params = _native_request(length)
    location = _answer_after_sign_in(_fresh_client(app), params)
    assert location.startswith("com.example.native:/cb?"), location[:200]
    answer = redirect_params(location)
    assert answer["state"] == params["state"] and answer["iss"] == "https://localhost"
    if length <= 4000:
        assert "code" in answer
    else:
        assert answer["error"] == "invalid_request" and "code" not in answer


def test_a_long_request_with_prompt_none_is_still_answered_login_required(app, flow_clients):
    """Only a request sent to a page is measured: a signed-in person's prompt=none with max_age=0
    is answered login_required, whatever its length."""
    browser = _fresh_client(app)
    AuthActions(browser).login()
    params = {**_native_request(6000), "prompt": "none", "max_age": "0"}
    answer = redirect_params(browser.get(_return_url(**params)).headers["Location"])
    assert answer["error"] == "login_required" and answer["state"] == params["state"]
