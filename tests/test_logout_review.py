"""Review of sign-out and sessions: the remember-me cookie at sign-out, a browser where another
person signs in over a session, and the end-session endpoint's edge cases."""

import html
import re
import socket
import threading
import time

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD
from identity.extensions import db
from identity.models import Client, LogoutDelivery, User, UserSession
from mfa_actions import code_at, enrol_user, second_step, step_clock  # noqa: F401 (a fixture)


def whoami(client) -> str | None:
    """The user name the browser is signed in as (the diagnostics page), or None."""
    response = client.get("/diagnostics")
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        return None
    return "bob" if "bob@example.com" in response.get_data(as_text=True) else "alice"


def remember_cookies(app, response) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(app.config["REMEMBER_COOKIE_NAME"] + "=")]


def test_sign_out_deletes_the_remember_me_cookie(app, client, flow_clients):
    AuthActions(client).login(remember=True)
    response = AuthActions(client).logout()
    assert response.status_code == 200
    (cookie,) = remember_cookies(app, response)
    assert "Expires=Thu, 01 Jan 1970" in cookie


def test_sign_out_after_another_user_signed_in_does_not_bring_back_the_first(app, client, flow_clients):
    AuthActions(client).login(remember=True)  # alice, remembered, on a shared browser
    assert whoami(client) == "alice"
    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 302  # bob signs in over it
    assert whoami(client) == "bob"
    assert AuthActions(client).logout().status_code == 200
    assert whoami(client) is None


def live_sessions(app, username: str) -> int:
    with app.app_context():
        return len(db.session.scalars(select(UserSession.id).join(User, User.id == UserSession.user_id).where(
            User.username == username, UserSession.revoked_at.is_(None))).all())


def drop_browser_session_cookie(app, client):
    client.delete_cookie(app.config["SESSION_COOKIE_NAME"], domain="localhost")  # the browser was closed


def test_another_user_signing_in_ends_the_first_users_session_and_tells_its_clients(app, client, flow_clients):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri="https://web.example.com/backchannel"))
        db.session.commit()
    AuthActions(client).login(remember=True)  # alice, remembered, on a shared browser
    oauth = OAuthActions(client)
    assert "code" in redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])
    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 302  # bob, not remembered
    assert live_sessions(app, "alice") == 0
    with app.app_context():
        alice = db.session.scalar(select(User.subject).where(User.username == "alice"))
        assert [(d.client_id, d.subject) for d in db.session.scalars(select(LogoutDelivery))] == [("web", alice)]
    drop_browser_session_cookie(app, client)
    assert whoami(client) is None  # not alice again, from her remember-me cookie


def test_another_user_with_a_second_factor_ends_the_first_users_session_at_the_password_step(
        app, client, flow_clients, step_clock):
    secret, _ = enrol_user(app, "bob")
    AuthActions(client).login(remember=True)  # alice
    response = AuthActions(client).login("bob", BOB_PASSWORD)
    assert response.headers["Location"].startswith("/account/login/mfa")
    assert live_sessions(app, "alice") == 0  # her cookie is gone from this browser: so is her session
    assert whoami(client) is None
    assert second_step(client, code_at(secret)).status_code == 302
    assert whoami(client) == "bob"
    assert live_sessions(app, "bob") == 1


def test_the_same_user_signing_in_again_keeps_no_remember_me_cookie_of_the_first_sign_in(app, client, flow_clients):
    AuthActions(client).login(remember=True)
    response = AuthActions(client).login()  # again (prompt=login, say), not remembered this time
    (cookie,) = remember_cookies(app, response)
    assert "Expires=Thu, 01 Jan 1970" in cookie


def trickling_server(stop: threading.Event) -> int:
    """A loopback HTTP server that sends a 200's status line, then its headers a byte every 0.2 s
    until `stop` is set: each read gets a byte well within any timeout, the whole answer never comes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            connection.sendall(b"X-Slow: ")
            while not stop.wait(0.2):
                connection.sendall(b"a")

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_logout_post_is_abandoned_after_its_timeout_even_when_the_client_trickles_its_headers():
    from identity.services.logout_delivery import post_logout_token

    """The answer's headers trickle in a byte every 0.2 s for as long as the client listens (within
    any per-read timeout, never complete): the attempt still ends, timed out. Judged by its ending
    at all, not by the clock: the thread's join is only a bound for a hang (the trickle would go
    on for ever), far above the 1 s timeout."""
    stop = threading.Event()
    port = trickling_server(stop)
    errors: list = []
    attempt = threading.Thread(target=lambda: errors.append(
        post_logout_token(f"http://127.0.0.1:{port}/bc", "token", timeout=1, max_bytes=4096)), daemon=True)
    try:
        attempt.start()
        attempt.join(30)
        assert not attempt.is_alive(), "the attempt was still reading a trickled answer"
    finally:
        stop.set()
    assert errors and errors[0] is not None and "timed out" in errors[0], errors


def test_removing_a_user_tells_the_clients_of_their_sessions_and_grants(app, client, flow_clients, runner):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri="https://web.example.com/backchannel"))
        db.session.commit()
        alice = db.session.scalar(select(User.subject).where(User.username == "alice"))
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    assert "refresh_token" in oauth.token("web", grant_type="authorization_code", code=code,
                                          redirect_uri="https://web.example.com/cb").get_json()
    result = runner.invoke(args=["users", "remove", "alice"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        queued = [(d.client_id, d.subject, d.reason) for d in db.session.scalars(select(LogoutDelivery))]
    assert queued == [("web", alice, "user_removed")]
    assert whoami(client) is None


def sid_of(client) -> str:
    """The signed-in session's public sid, as the diagnostics page shows it (an ID token's `sid`)."""
    page = client.get("/diagnostics").get_data(as_text=True)
    start = page.index('<code class="break">') + len('<code class="break">')
    return page[start:page.index("</code>", start)]


def web_id_token_sid(client) -> str:
    import jwt

    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    id_token = oauth.token("web", grant_type="authorization_code", code=code,
                           redirect_uri="https://web.example.com/cb").get_json()["id_token"]
    return jwt.decode(id_token, options={"verify_signature": False})["sid"]


def set_web_backchannel(app):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri="https://web.example.com/backchannel"))
        db.session.commit()


def test_a_sign_out_after_signing_in_again_reaches_the_clients_of_the_first_sign_in(app, client, flow_clients):
    set_web_backchannel(app)
    AuthActions(client).login()
    first = web_id_token_sid(client)  # web signed alice in, with this session's sid
    assert AuthActions(client).login().status_code == 302  # alice again (prompt=login, max_age)
    assert AuthActions(client).logout().status_code == 200
    assert live_sessions(app, "alice") == 0
    with app.app_context():
        assert [(d.client_id, d.session_id) for d in db.session.scalars(select(LogoutDelivery))] == [("web", first)]


def test_signing_in_again_keeps_the_sessions_sid(app, client, flow_clients, step_clock):
    AuthActions(client).login(remember=True)
    first = web_id_token_sid(client)
    assert AuthActions(client).login().status_code == 302
    assert sid_of(client) == first and live_sessions(app, "alice") == 1
    secret, _ = enrol_user(app, "alice")
    AuthActions(client).login()  # and again, with a second factor now
    assert second_step(client, code_at(secret)).status_code == 302
    assert sid_of(client) == first and live_sessions(app, "alice") == 1
    assert web_id_token_sid(client) == first


def test_an_end_session_post_without_the_browsers_cookies_is_posted_again_from_this_site(app, client, flow_clients):
    """A client's auto-submitting logout form is a cross-site POST: the browser sends no SameSite=Lax
    cookie with it. The sign-out must not answer "done" then: it posts the fields again from this
    server's own page, and that same-site POST carries the cookies."""
    AuthActions(client).login(remember=True)
    hint = web_id_token(client)
    fields = {"id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s-1"}
    cross_site = app.test_client()  # the same browser, but its cookies stay home (SameSite=Lax)
    page = cross_site.post("/connect/endsession", data=fields)
    assert page.status_code == 200 and "Location" not in page.headers
    assert live_sessions(app, "alice") == 1 and whoami(client) == "alice"
    body = page.get_data(as_text=True)
    assert 'action="/connect/endsession"' in body and page.headers["Cache-Control"] == "no-store"
    assert "form-action 'self' https://web.example.com" in page.headers["Content-Security-Policy"]
    again = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body))
    assert {k: html.unescape(v) for k, v in again.items() if k in fields} == fields
    done = client.post("/connect/endsession", data=again)  # the page posts itself, with the cookies
    assert done.status_code == 303 and done.headers["Location"] == "https://web.example.com/bye?state=s-1"
    assert live_sessions(app, "alice") == 0 and whoami(client) is None
    nobody = app.test_client().post("/connect/endsession", data=again)  # posted again, still no cookie
    assert nobody.status_code == 303  # nobody to sign out here: back to the client, no loop


def web_id_token(client) -> str:
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    return oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").get_json()["id_token"]


# --- every way a session or grant ends, and who hears of it (the logout review) ---------------


def queued_logouts(app) -> list[tuple[str, str | None, str | None]]:
    """(client_id, sub, sid) of each queued logout token, in the order queued."""
    with app.app_context():
        return [(d.client_id, d.subject, d.session_id)
                for d in db.session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id))]


def alice_subject(app) -> str:
    with app.app_context():
        return db.session.scalar(select(User.subject).where(User.username == "alice"))


def web_offline_id_token_sid(client) -> str:
    """Signed in: a code for `web` with offline_access (a refresh-token family in this session), redeemed."""
    import jwt

    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    answer = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    assert "refresh_token" in answer
    return jwt.decode(answer["id_token"], options={"verify_signature": False})["sid"]


def test_an_app_revoked_on_the_grants_page_tells_a_client_that_requires_sid_of_each_session(app, client, flow_clients):
    """backchannel_logout_session_required: every token must carry `sid`. Revoking the app ends the
    grants of a session; the client must hear of it with that session's `sid`, not be skipped."""
    from conftest import csrf_token

    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri="https://web.example.com/backchannel", backchannel_logout_session_required=True))
        db.session.commit()
    AuthActions(client).login()
    sid = web_offline_id_token_sid(client)
    page = client.get("/account/grants").get_data(as_text=True)
    response = client.post("/account/grants/revoke", data={"csrf_token": csrf_token(page), "client_id": "web"})
    assert response.status_code == 302
    assert queued_logouts(app) == [("web", alice_subject(app), sid)]


def test_signing_a_user_out_everywhere_tells_each_client_of_a_session_once(app, client, flow_clients, runner):
    """`sessions end USER`: the browser session and the app grant it issued end together; the
    client of both gets one logout token for that sid, as a password change sends."""
    set_web_backchannel(app)
    AuthActions(client).login()
    sid = web_offline_id_token_sid(client)
    result = runner.invoke(args=["sessions", "end", "alice"])
    assert result.exit_code == 0, result.output
    assert "Ended 2 session(s) and grant(s)" in result.output
    assert queued_logouts(app) == [("web", alice_subject(app), sid)]


@pytest.mark.database_independent
def test_a_frontchannel_uri_registered_with_an_empty_query_gets_iss_and_sid_as_its_query(app, client, flow_clients):
    """`https://web.example.com/fc?` (an empty query, RFC 3986): the iframe must load
    `.../fc?iss=...&sid=...`, not `.../fc??iss=...`, whose first parameter is named `?iss`."""
    import json
    from identity.services.seed import apply_seed, load_seed

    web = dict(flow_clients["clients"][0], frontchannel_logout_uri="https://web.example.com/fc?",
               frontchannel_logout_session_required=True)
    with app.app_context():
        apply_seed(load_seed(json.dumps({"api_scopes": [], "clients": [web], "users": []})))
    AuthActions(client).login()
    sid = web_id_token_sid(client)
    page = AuthActions(client).logout().get_data(as_text=True)
    (src,) = re.findall(r'<iframe class="frontchannel-logout" src="([^"]+)"', page)
    assert html.unescape(src) == f"https://web.example.com/fc?iss=https%3A%2F%2Flocalhost&sid={sid}"


@pytest.fixture(scope="module")
def relying_party():
    """The `web` client's back-channel logout endpoint: a real HTTP server on loopback, one per module."""
    from rp_receiver import RelyingParty

    receiver = RelyingParty(jwks={"keys": []}, issuer="https://localhost", client_id="web").start()
    yield receiver
    receiver.stop()


@pytest.fixture
def web_rp(app, client, flow_clients, relying_party):
    relying_party.jwks = client.get("/.well-known/openid-configuration/jwks").get_json()
    relying_party.received, relying_party.status = [], 200
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri=relying_party.url))
        db.session.commit()
    return relying_party


def send_due(app) -> dict:
    from identity.services.logout_delivery import deliver_due

    with app.app_context():
        try:
            return deliver_due()
        finally:
            db.session.remove()


@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}])
def test_a_logout_token_is_retried_until_the_retry_window_ends_not_given_up_before(app, client, web_rp):
    """docs/logout.md: a failed delivery is retried "until BACKCHANNEL_LOGOUT_RETRY_SECONDS after the
    row was queued; then it is given up". A failure whose next backoff would pass that moment
    must be tried once more at it, not given up at once, minutes before the window ends."""
    AuthActions(client).login()
    web_id_token_sid(client)
    assert AuthActions(client).logout().status_code == 200
    window = app.config["BACKCHANNEL_LOGOUT_RETRY_SECONDS"]
    with app.app_context():  # queued 500 s short of the window's end, after ten failed attempts (next wait: 600 s)
        now = int(time.time())
        db.session.execute(update(LogoutDelivery).values(created_at=now - window + 500, attempts=10, next_attempt_at=0))
        db.session.commit()
    web_rp.status = 503  # the app is down
    assert send_due(app) == {"delivered": 0, "retry": 1, "given_up": 0}
    with app.app_context():
        row = db.session.scalars(select(LogoutDelivery)).one()
        assert row.gave_up_at is None and row.next_attempt_at <= row.created_at + window
        db.session.execute(update(LogoutDelivery).values(next_attempt_at=0))  # that moment has come
        db.session.commit()
    web_rp.status = 200  # back up before the window ends
    assert send_due(app)["delivered"] == 1
    assert len(web_rp.tokens) == 2 and web_rp.errors == []
