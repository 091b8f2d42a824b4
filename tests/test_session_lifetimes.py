"""Browser sessions: idle timeout, absolute lifetime (remember me included), a throttled
last-seen write, and a public `sid` for tokens that is not the cookie's identifier."""

import base64
import hashlib
import json
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from identity import clock
from identity.extensions import db
from identity.models import AuthorizationCode, RefreshToken, UserSession


class Clock:
    """identity.clock.now, moved by hand (the browser's cookies keep real time)."""

    def __init__(self, monkeypatch):
        self.offset = 0
        real = clock.now
        monkeypatch.setattr(clock, "now", lambda: real() + self.offset)

    def advance(self, seconds: int) -> None:
        self.offset += seconds


@pytest.fixture
def moved(monkeypatch):
    return Clock(monkeypatch)


def _session_row(app) -> UserSession:
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        db.session.expunge_all()
        return row


def _signed_in(client) -> bool:
    response = client.get("/diagnostics")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def _drop_browser_session_cookie(client, app):
    client.delete_cookie(app.config["SESSION_COOKIE_NAME"], domain="localhost")


LIFETIMES = {"SESSION_IDLE_SECONDS": 600, "SESSION_ABSOLUTE_SECONDS": 3600}


@pytest.mark.parametrize("app_config", [LIFETIMES])
def test_idle_session_is_ended_and_user_must_sign_in_again(client, seeded, app, moved):
    assert AuthActions(client).login().status_code == 302
    moved.advance(300)
    assert _signed_in(client)
    moved.advance(601)
    response = client.get("/diagnostics")
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    assert _session_row(app).revoked_at is not None  # ended on the server, not just ignored
    moved.advance(-3000)  # even with the clock back, an ended session stays ended
    assert not _signed_in(client)


@pytest.mark.parametrize("app_config", [LIFETIMES])
def test_active_session_ends_at_its_absolute_lifetime(client, seeded, app, moved):
    assert AuthActions(client).login().status_code == 302
    for _ in range(6):  # used every 590 s: never idle
        moved.advance(590)
        assert _signed_in(client)
    moved.advance(300)  # 3840 s after sign-in
    assert not _signed_in(client)
    assert _session_row(app).revoked_at is not None


@pytest.mark.parametrize("app_config", [LIFETIMES])
def test_remember_me_does_not_outlive_the_absolute_lifetime(client, seeded, app, moved):
    response = AuthActions(client).login(remember=True)
    assert response.status_code == 302
    remember = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(app.config["REMEMBER_COOKIE_NAME"] + "=")]
    assert len(remember) == 1
    expires = [part.split("=", 1)[1] for part in remember[0].split("; ") if part.lower().startswith("expires=")]
    assert expires, remember[0]
    session = _session_row(app)
    # the remember cookie itself expires no later than the session's absolute end
    assert parsedate_to_datetime(expires[0]).timestamp() <= session.created_at + 3600 + 2
    for _ in range(6):
        moved.advance(590)
        _drop_browser_session_cookie(client, app)  # the browser was closed: only "remember me" is left
        assert _signed_in(client)
    moved.advance(300)
    _drop_browser_session_cookie(client, app)
    assert not _signed_in(client)
    assert _session_row(app).revoked_at is not None


@pytest.mark.parametrize("app_config", [LIFETIMES])
def test_remembered_session_also_has_the_idle_timeout(client, seeded, app, moved):
    assert AuthActions(client).login(remember=True).status_code == 302
    moved.advance(601)
    _drop_browser_session_cookie(client, app)
    assert not _signed_in(client)
    assert _session_row(app).revoked_at is not None


@pytest.mark.parametrize("app_config", [LIFETIMES])
def test_last_seen_is_written_at_most_once_a_minute(client, seeded, app, moved):
    assert AuthActions(client).login().status_code == 302
    first = _session_row(app).last_seen_at
    for _ in range(5):
        moved.advance(10)
        assert _signed_in(client)
    assert _session_row(app).last_seen_at == first  # 50 s of requests: no write
    moved.advance(15)
    assert _signed_in(client)
    assert _session_row(app).last_seen_at >= first + 65


def test_lifetime_settings_are_checked():
    from app import create_app
    from conftest import make_config
    from identity.config.startup import ConfigurationError

    for bad in ({"SESSION_IDLE_SECONDS": 0}, {"SESSION_ABSOLUTE_SECONDS": -1}, {"SESSION_IDLE_SECONDS": "x"},
                {"SESSION_ABSOLUTE_SECONDS": True}):
        with pytest.raises(ConfigurationError):
            create_app(make_config("sqlite://", **bad))


# --- the public sid -------------------------------------------------------------------------------


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _cookie_identifier(client) -> str:
    with client.session_transaction() as cookie_session:
        return cookie_session["_user_id"]


def test_the_sessions_table_keeps_a_digest_of_the_cookie_identifier_not_the_identifier(client, seeded, app):
    """Whoever reads user_sessions (a backup, a replica, a dump) must hold no one's session: like
    every other token, the cookie's session identifier is stored only as its SHA-256."""
    AuthActions(client).login()
    cookie_sid = _cookie_identifier(client)
    with app.app_context():
        stored = list(db.session.scalars(select(UserSession.sid)))
    assert stored == [hashlib.sha256(cookie_sid.encode()).hexdigest()]
    assert _signed_in(client)
    with client.session_transaction() as cookie_session:  # a cookie carrying what is stored signs nobody in
        cookie_session["_user_id"] = stored[0]
    assert not _signed_in(client)


def test_id_token_sid_is_not_the_cookie_identifier_and_logout_with_it_works(client, flow_clients, app):
    AuthActions(client).login()
    oauth = OAuthActions(client)
    response = oauth.authorize(client_id="web", scope="openid profile offline_access IdentityServerApi")
    code = redirect_params(response.headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    cookie_sid = _cookie_identifier(client)
    session = _session_row(app)
    assert hashlib.sha256(cookie_sid.encode()).hexdigest() == session.sid
    id_sid = _claims(tokens["id_token"])["sid"]
    assert id_sid and id_sid != cookie_sid
    assert _claims(tokens["access_token"])["sid"] == id_sid
    with app.app_context():  # nothing stored for tokens holds the cookie's identifier
        assert db.session.scalar(select(AuthorizationCode.session_id)) == id_sid
    # the refresh token (and its successor) carry the public sid too
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).get_json()
    assert _claims(refreshed["access_token"])["sid"] == id_sid
    with app.app_context():
        assert set(db.session.scalars(select(RefreshToken.session_id))) == {id_sid}
    # the diagnostics page shows the public sid, never the cookie's
    page = client.get("/diagnostics").get_data(as_text=True)
    assert id_sid in page and cookie_sid not in page
    # RP-initiated logout with that ID token as the hint signs this session out without asking
    response = client.get("/connect/endsession", query_string={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://web.example.com/bye"})
    assert response.status_code == 302 and response.headers["Location"] == "https://web.example.com/bye"
    assert _session_row(app).revoked_at is not None
    assert not _signed_in(client)


def test_public_sid_is_live_only_while_the_session_is(client, flow_clients, app, moved):
    """A code redeems only while the session named by its public sid is live: not under the
    cookie's identifier, not under an unknown id, not once the session went idle."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    session = _session_row(app)

    def code_in(session_id: str | None = None) -> str:
        response = oauth.authorize(client_id="web", scope="openid profile")
        code = redirect_params(response.headers["Location"])["code"]
        if session_id is not None:
            with app.app_context():
                db.session.execute(update(AuthorizationCode).where(
                    AuthorizationCode.code_hash == hashlib.sha256(code.encode()).hexdigest()).values(session_id=session_id))
                db.session.commit()
        return code

    def redeems(code: str) -> bool:
        response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
        assert response.status_code in (200, 400), response.get_data(as_text=True)
        return response.status_code == 200

    assert redeems(code_in())
    assert _claims(oauth.token("web", grant_type="authorization_code", code=code_in(),
                               redirect_uri="https://web.example.com/cb").get_json()["id_token"])["sid"] == session.public_sid
    assert not redeems(code_in(_cookie_identifier(client)))  # the cookie's identifier is not a public id
    assert not redeems(code_in(session.sid))  # nor is what the table keeps of it
    assert not redeems(code_in("no-such-session"))
    late = code_in()
    moved.advance(app.config["SESSION_IDLE_SECONDS"] + 1)
    assert not redeems(late)
