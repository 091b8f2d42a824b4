"""Front-channel logout: the signed-out page loads each client's frontchannel_logout_uri in an
iframe (the clients this browser session issued to), and its CSP frames exactly their origins."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from sqlalchemy import update

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import Client

IFRAME = re.compile(r'<iframe class="frontchannel-logout" src="([^"]+)"')


@pytest.fixture
def signed_in(app, client, flow_clients):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            frontchannel_logout_uri="https://web.example.com/fc?app=1", frontchannel_logout_session_required=True))
        db.session.execute(update(Client).where(Client.client_id == "implicit").values(
            frontchannel_logout_uri="https://implicit.example.com/logout"))
        db.session.execute(update(Client).where(Client.client_id == "native").values(
            frontchannel_logout_uri="https://native.example.com/logout"))  # never used in this session
        db.session.commit()
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    implicit = oauth.authorize(client_id="implicit", response_type="id_token", scope="openid", nonce="n-1")
    assert implicit.status_code == 302
    return jwt.decode(tokens["id_token"], options={"verify_signature": False})


def frames(page: str) -> list[str]:
    return [html.unescape(src) for src in IFRAME.findall(page)]


def csp_directive(response, name: str) -> str | None:
    for part in response.headers["Content-Security-Policy"].split(";"):
        if part.strip().startswith(name + " "):
            return part.strip()
    return None


def test_signed_out_page_frames_the_sessions_clients(client, signed_in):
    response = AuthActions(client).logout()
    assert response.status_code == 200
    uris = frames(response.get_data(as_text=True))
    assert len(uris) == 2
    web = next(u for u in uris if u.startswith("https://web.example.com/fc"))
    assert parse_qs(urlsplit(web).query) == {"app": ["1"], "iss": ["https://localhost"], "sid": [signed_in["sid"]]}
    assert "https://implicit.example.com/logout" in uris  # no iss/sid: not asked for
    assert csp_directive(response, "frame-src") == "frame-src https://implicit.example.com https://web.example.com"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_endsession_with_a_return_address_shows_the_frames_then_a_link_back(client, signed_in, app):
    hint_claims = signed_in
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    hint = oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").get_json()["id_token"]
    response = client.get("/connect/endsession", query_string={
        "id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s-1"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert len(frames(page)) == 2
    assert 'href="https://web.example.com/bye?state=s-1"' in page
    assert "Return to Web App" in page, "the link back does not name the client it returns to"
    assert csp_directive(response, "frame-src") == "frame-src https://implicit.example.com https://web.example.com"
    assert hint_claims["sid"] in frames(page)[0] + frames(page)[1]


def test_no_frames_and_no_frame_src_without_front_channel_clients(app, client, flow_clients):
    AuthActions(client).login()
    response = AuthActions(client).logout()
    assert frames(response.get_data(as_text=True)) == []
    assert csp_directive(response, "frame-src") is None


def test_a_disabled_client_is_not_framed(app, client, signed_in):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "implicit").values(enabled=False))
        db.session.commit()
    response = AuthActions(client).logout()
    assert [urlsplit(u).netloc for u in frames(response.get_data(as_text=True))] == ["web.example.com"]
    assert csp_directive(response, "frame-src") == "frame-src https://web.example.com"
