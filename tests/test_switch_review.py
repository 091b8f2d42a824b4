"""Review from outside: one browser, several people or accounts over time (who is signed in)."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from sqlalchemy import update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD
from identity.extensions import db
from identity.models import Client
from mfa_actions import code_at, enrol_user, second_step, step_clock  # noqa: F401 (a fixture)

IFRAME = re.compile(r'<iframe class="frontchannel-logout" src="([^"]+)"')


def frames(response) -> list[str]:
    return [html.unescape(src) for src in IFRAME.findall(response.get_data(as_text=True))]


@pytest.fixture
def alice_at_web(app, client, flow_clients):
    """Alice signed in on a shared browser, and signed in at a front-channel logout client: the
    `sid` of her session (from the web client's ID token)."""
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            frontchannel_logout_uri="https://web.example.com/fc", frontchannel_logout_session_required=True))
        db.session.commit()
    AuthActions(client).login(remember=True)
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    return jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]


def fc_sids(uris: list[str]) -> list[str]:
    return [parse_qs(urlsplit(u).query)["sid"][0] for u in uris if u.startswith("https://web.example.com/fc")]


def test_another_user_signing_in_tells_the_first_users_front_channel_clients(client, alice_at_web):
    """Bob signs in over Alice's session: it ends (her back-channel clients are told), but the web
    app, a front-channel logout client, kept Alice signed in in this very browser: only the browser
    can tell it, so the sign-in's answer frames its logout URI, then goes on."""
    response = AuthActions(client).login("bob", BOB_PASSWORD)
    assert fc_sids(frames(response)) == [alice_at_web], \
        f"the first user's front-channel clients were not told: {response.status_code} {response.headers.get('Location')}"
    assert response.status_code == 200
    assert "frame-src https://web.example.com" in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    assert '<a class="button" href="/">Continue</a>' in page  # goes on where the sign-in would have gone
    assert client.get("/").status_code == 200  # bob is signed in
    # told once: the next page does not frame it again
    assert frames(client.get("/")) == []


def test_the_frames_come_before_the_answer_to_the_pending_request(client, alice_at_web):
    oauth = OAuthActions(client)
    pending = "/connect/authorize?" + "&".join(f"{k}={v}" for k, v in {
        "client_id": "web", "response_type": "code", "scope": "openid", "state": "s-1",
        "redirect_uri": "https://web.example.com/cb"}.items())
    response = AuthActions(client).login("bob", BOB_PASSWORD, return_url=pending)
    assert fc_sids(frames(response)) == [alice_at_web]
    link = html.unescape(re.search(r'<a class="button" href="([^"]+)"', response.get_data(as_text=True)).group(1))
    params = redirect_params(link)
    assert link.startswith("https://web.example.com/cb?") and params["state"] == "s-1"
    token = oauth.token("web", grant_type="authorization_code", code=params["code"],
                        redirect_uri="https://web.example.com/cb").get_json()
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert claims["sid"] != alice_at_web  # bob's own session


def test_the_frames_wait_for_a_second_step(app, client, alice_at_web, step_clock):
    secret, _ = enrol_user(app, "bob")
    response = AuthActions(client).login("bob", BOB_PASSWORD)  # alice's session ends here
    assert response.headers["Location"].startswith("/account/login/mfa")
    response = second_step(client, code_at(secret))
    assert fc_sids(frames(response)) == [alice_at_web]


def test_the_same_user_signing_in_again_frames_nothing(client, alice_at_web):
    response = AuthActions(client).login()  # alice again: her session goes on under the same sid
    assert response.status_code == 302 and frames(response) == []


def test_a_form_post_answer_waits_for_the_frames_too(client, alice_at_web):
    pending = "/connect/authorize?" + "&".join(f"{k}={v}" for k, v in {
        "client_id": "web", "response_type": "code", "scope": "openid", "state": "s-2", "response_mode": "form_post",
        "redirect_uri": "https://web.example.com/cb"}.items())
    response = AuthActions(client).login("bob", BOB_PASSWORD, return_url=pending)
    assert fc_sids(frames(response)) == [alice_at_web]
    page = response.get_data(as_text=True)
    assert '<form method="post" action="https://web.example.com/cb"' in page
    assert 'name="state" value="s-2"' in page and 'name="code"' in page
    assert "form-action 'self' https://web.example.com" in response.headers["Content-Security-Policy"]
