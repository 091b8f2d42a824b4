"""Several tabs, the Back button and stale forms, through the test client where a browser adds nothing."""

import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, redirect_params
from conftest import csrf_token
from identity.extensions import db
from identity.models import AuthorizationCode, User, UserSession
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401


def _codes(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


def test_a_consent_refused_after_max_age_ran_out_on_the_page_issues_no_code(client, flow_clients, app):
    """prompt=consent with max_age: the person reads the consent page for longer than max_age, then
    presses Deny. The page sends them to sign in again, as it must; but the sign-in then answered
    the request without the consent page (prompt=consent was dropped on the way to it), so the
    client got a code the person had just refused."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    asked = oauth.authorize(client_id="web", prompt="consent", max_age="60", state="deny-me")
    consent_url = asked.headers["Location"]
    assert consent_url.startswith("/consent?"), consent_url
    page = client.get(consent_url)
    with app.app_context():  # the person reads the page for two minutes
        db.session.execute(UserSession.__table__.update().values(auth_time=int(time.time()) - 120))
        db.session.commit()
    denied = client.post(consent_url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "decision": "deny"})
    assert denied.status_code == 302 and denied.headers["Location"].startswith("/account/login?"), denied.headers
    return_url = dict(parse_qsl(urlsplit(denied.headers["Location"]).query))["returnUrl"]

    signed_in = AuthActions(client).login(return_url=return_url)

    location = signed_in.headers.get("Location", "")
    assert "code" not in redirect_params(location), location
    assert _codes(app) == 0
    resumed = client.get(location)  # back at the authorization endpoint: the consent page again
    assert resumed.status_code == 302 and resumed.headers["Location"].startswith("/consent?"), resumed.headers
    assert _codes(app) == 0


def test_a_sign_in_as_another_user_than_the_id_token_hint_names_is_answered_not_looped(client, flow_clients, app):
    """A tab of an app still holds the ID token of alice (who used this browser before) while bob is
    signed in. The app's request names alice (id_token_hint): bob is sent to sign in, as he must.
    Signing in there as bob led back to the same sign-in page, with nothing said, for ever: a dead
    end for anyone without alice's password. OpenID Connect Core 3.1.2.1: when the user the hint
    names is not the one signed in by the request, the OP SHOULD answer an error (login_required)."""
    from conftest import BOB_PASSWORD

    AuthActions(client).login()
    oauth = OAuthActions(client)
    token, _ = oauth.code_flow(client_id="web", scope="openid profile")
    alice_hint = token.get_json()["id_token"]
    AuthActions(client).logout()
    AuthActions(client).login(username="bob", password=BOB_PASSWORD)
    asked = oauth.authorize(client_id="web", id_token_hint=alice_hint, state="hinted")
    assert asked.headers["Location"].startswith("/account/login?")
    return_url = dict(parse_qsl(urlsplit(asked.headers["Location"]).query))["returnUrl"]
    codes = _codes(app)

    answered = AuthActions(client).login(username="bob", password=BOB_PASSWORD, return_url=return_url)

    location = answered.headers.get("Location", "")
    assert location.startswith("https://web.example.com/cb?"), location
    params = redirect_params(location)
    assert params["error"] == "login_required" and params["state"] == "hinted", params
    assert _codes(app) == codes


def _live_sessions(app, username: str) -> list[str]:
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        return db.session.scalars(select(UserSession.public_sid).where(UserSession.user_id == user_id,
                                                                       UserSession.revoked_at.is_(None))).all()


def _prompt_login_return_url(oauth) -> str:
    """An app's prompt=login request (a tab asking alice to sign in again): the sign-in page's returnUrl."""
    asked = oauth.authorize(client_id="web", prompt="login")
    assert asked.headers["Location"].startswith("/account/login?"), asked.headers
    return dict(parse_qsl(urlsplit(asked.headers["Location"]).query))["returnUrl"]


def test_another_user_signing_in_during_the_second_step_ends_the_session_it_would_continue(client, flow_clients,
                                                                                           app, step_clock):
    """Alice, signed in, is asked to sign in again (prompt=login) in one tab: her password is right,
    and the browser waits for her code, its cookie no longer holding her session (which the second
    step would continue). Bob then signs in in another tab of the same browser. Another user's
    sign-in ends the browser's session (audited as another_user_signed_in); this one was left
    live, held by no cookie, its apps never told of a sign-out until it idled out a day later."""
    from conftest import BOB_PASSWORD

    secret, _ = enrol_user(app)
    password_step(client)
    assert second_step(client, code_at(secret)).status_code == 302
    step_clock.next_step()
    assert len(_live_sessions(app, "alice")) == 1
    oauth = OAuthActions(client)
    held = password_step(client, return_url=_prompt_login_return_url(oauth))
    assert "/account/login/mfa" in held.headers["Location"], held.headers

    AuthActions(client).login(username="bob", password=BOB_PASSWORD)

    assert _live_sessions(app, "bob") and _live_sessions(app, "alice") == []


def test_a_second_step_that_ran_out_ends_the_session_it_would_continue(client, flow_clients, app, step_clock,
                                                                      monkeypatch):
    """The same, when the code never comes: the step runs out (MFA_PENDING_SECONDS) and the browser
    is sent back to the password. The session the step would have continued stayed live, held by no
    cookie: a sign-in after that started another, and signing out of it left the first one live."""
    from identity.services import accounts

    secret, _ = enrol_user(app)
    password_step(client)
    assert second_step(client, code_at(secret)).status_code == 302
    step_clock.next_step()
    oauth = OAuthActions(client)
    return_url = _prompt_login_return_url(oauth)
    password_step(client, return_url=return_url)
    later = int(time.time()) + app.config["MFA_PENDING_SECONDS"] + 1
    monkeypatch.setattr(accounts, "now", lambda: later)

    back = client.get("/account/login/mfa")

    assert back.status_code == 302 and back.headers["Location"].startswith("/account/login"), back.headers
    assert _live_sessions(app, "alice") == []


def test_signing_out_during_the_second_step_ends_the_session_it_would_continue(client, flow_clients, app, step_clock):
    """Alice is asked to sign in again (prompt=login) in one tab and waits at the second step; in
    another tab she signs out of an app, which sends her to the end-session endpoint. The browser
    held no signed-in cookie then (the second step would continue her session), so the sign-out
    ended nothing: her session stayed live, its apps never told, though she had signed out."""
    secret, _ = enrol_user(app)
    password_step(client)
    assert second_step(client, code_at(secret)).status_code == 302
    step_clock.next_step()
    password_step(client, return_url=_prompt_login_return_url(OAuthActions(client)))

    asked = client.get("/connect/endsession")  # ends a session: asked first, as a signed-in person is
    assert "Do you want to sign out?" in asked.get_data(as_text=True)
    signed_out = client.post("/connect/endsession", data={"csrf_token": csrf_token(asked.get_data(as_text=True))})

    assert signed_out.status_code == 200 and "You are signed out." in signed_out.get_data(as_text=True)
    assert _live_sessions(app, "alice") == []


def test_a_stale_end_session_confirmation_says_why_it_asks_again(client, flow_clients):
    """An app's sign-out asks alice to confirm (no id_token_hint); meanwhile she signs out and in
    again in another tab. Her press of "Sign out" on the first page was refused for its CSRF
    token and the same question came back, with nothing said: it looked as if the button did
    nothing."""
    AuthActions(client).login()
    asked = client.get("/connect/endsession?client_id=web&post_logout_redirect_uri=https%3A%2F%2Fweb.example.com%2Fbye")
    stale = csrf_token(asked.get_data(as_text=True))
    AuthActions(client).logout()
    AuthActions(client).login()

    again = client.post("/connect/endsession", data={"csrf_token": stale, "client_id": "web",
                                                     "post_logout_redirect_uri": "https://web.example.com/bye"})

    html = again.get_data(as_text=True)
    assert "Do you want to sign out?" in html and "before this browser last signed in" in html, html
    assert client.get("/diagnostics").status_code == 200, "nothing was ended unasked"


def test_the_second_step_names_the_account_it_finishes(client, flow_clients, app, step_clock):
    """Alice reaches the second step in one tab; in another tab of the same browser bob's password
    is typed, and the browser's half-signed-in state is now bob's. Alice's tab, reloaded (its form
    expired), showed the same "Two-step sign-in" page with nothing to say whose sign-in it now
    finishes: a code typed there counted toward bob's lockout, or signed the person in as bob
    for alice's app. The page names the account."""
    from conftest import BOB_PASSWORD

    enrol_user(app)
    enrol_user(app, "bob")
    password_step(client)
    assert "alice" in client.get("/account/login/mfa").get_data(as_text=True)
    password_step(client, username="bob", password=BOB_PASSWORD)

    page = client.get("/account/login/mfa").get_data(as_text=True)

    assert "Signing in as <strong>bob</strong>" in page


def test_an_answered_request_opened_again_after_signing_out_asks_to_sign_in(client, flow_clients, app):
    """Alice signs in to an app (its request answered with a code carrying its nonce), signs out in
    another tab, then presses Back in the first to the authorization request, or the app sends it
    again. Nobody being signed in, any live code with that nonce counted as a replay: the app got
    error=invalid_request "Replay attack" in place of the sign-in page. The nonce check needs the
    user it answers for (another user's code with the nonce is a replay; the same user's is the
    request sent again), and it is made again when the sign-in resumes the request."""
    from conftest import BOB_PASSWORD

    AuthActions(client).login()
    oauth = OAuthActions(client)
    url = "/connect/authorize?" + urlencode(oauth.authorize_params(client_id="web", nonce="n-back", state="back"))
    assert "code" in redirect_params(client.get(url).headers["Location"])
    AuthActions(client).logout()

    again = client.get(url)

    assert again.status_code == 302 and again.headers["Location"].startswith("/account/login?"), again.headers
    return_url = dict(parse_qsl(urlsplit(again.headers["Location"]).query))["returnUrl"]
    answered = AuthActions(client).login(return_url=return_url)
    assert "code" in redirect_params(answered.headers["Location"]), answered.headers["Location"]
    # another user signing in there is still refused: the nonce is alice's request's
    AuthActions(client).logout()
    refused = AuthActions(client).login(username="bob", password=BOB_PASSWORD, return_url=return_url)
    assert redirect_params(refused.headers["Location"]).get("error") == "invalid_request", refused.headers["Location"]
