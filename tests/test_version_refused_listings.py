"""A refresh token issued under a password version its user no longer has is refused by the
token endpoint and by introspection; the lists of live grants leave it out too: the sessions and
devices list (GET /localapi/sessions, the page) and the connected apps page (and its revocation,
which revokes only what the page lists). Its app is still told of a removed user's end
(back-channel logout), and "sign out everywhere else" (the page, DELETE /localapi/sessions)
revokes its family and tells it too: its family was never ended, so the app was never told, and
may still hold her sign-in. The count the page shows is of the entries it listed. The connected
apps page judges a code's access token by its version as the bearer check does, too.
Such a token is one the previous release let outlive a change: made here by setting its row's
version back. On both databases."""

import pytest
from sqlalchemy import select, update

from actions import OAuthActions, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, LogoutDelivery, RefreshToken, User
from identity.services.tokens import token_hash
from test_backchannel_logout import set_client
from test_localapi_support import CHEAP_ARGON2, bearer
from test_sessions_devices import LEGACY_BASIC, browser, by_kind, password_grant, refresh, sessions_of

VERSIONS = ["current", "outdated"]


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


def _issued_under(app, refresh_token: str, version: str) -> None:
    """Leave the token's version as it is ("current"), or set it to the one before alice's ("outdated")."""
    if version == "current":
        return
    with app.app_context():
        current = db.session.scalar(select(User.password_version).where(User.username == "alice"))
        db.session.execute(update(RefreshToken).where(RefreshToken.token_hash == token_hash(refresh_token))
                           .values(password_version=current - 1))
        db.session.commit()


def _refused_when_used(client, refresh_token: str, version: str) -> None:
    """What the token endpoint makes of the token: the rule the lists follow."""
    assert refresh(client, refresh_token).status_code == (200 if version == "current" else 400)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_sessions_list_leaves_out_a_grant_whose_token_is_refused_by_its_version(app, flow_clients, client, version):
    caller, other = password_grant(client), password_grant(client, user_agent="Other/1.0")
    _issued_under(app, other["refresh_token"], version)
    grants = by_kind(sessions_of(client, caller["access_token"]), "app")
    assert len(grants) == (2 if version == "current" else 1), grants
    _refused_when_used(client, other["refresh_token"], version)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_connected_apps_page_leaves_out_an_app_whose_only_token_is_refused_by_its_version(
        app, flow_clients, client, version):
    here = browser(app)
    granted = password_grant(client)
    _issued_under(app, granted["refresh_token"], version)
    page = here.get("/account/grants")
    assert page.status_code == 200
    listed = 'name="client_id" value="legacy"' in page.get_data(as_text=True)
    assert listed is (version == "current")
    revoked = here.post("/account/grants/revoke", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                        "client_id": "legacy"})
    assert revoked.status_code == 302
    with app.app_context():
        recorded = db.session.scalars(select(AuditEvent.event).where(AuditEvent.event == "consent_revoked")).all()
        db.session.rollback()
    assert len(recorded) == (1 if version == "current" else 0)
    assert refresh(client, granted["refresh_token"]).status_code == 400  # revoked, or refused by its version


@pytest.mark.parametrize("version", VERSIONS)
def test_a_removed_users_app_is_told_of_her_end_whatever_its_tokens_version(app, flow_clients, client, version):
    set_client(app, "legacy", backchannel_logout_uri="https://legacy.example.com/logout")
    granted = password_grant(client)
    _issued_under(app, granted["refresh_token"], version)
    removed = app.test_cli_runner().invoke(args=["users", "remove", "alice"])
    assert removed.exit_code == 0, removed.output
    with app.app_context():
        told = db.session.scalars(select(LogoutDelivery.reason).where(LogoutDelivery.client_id == "legacy")).all()
        db.session.rollback()
    assert told == ["user_removed"]


def _told(app, client_id: str) -> list[str]:
    with app.app_context():
        told = db.session.scalars(select(LogoutDelivery.reason).where(LogoutDelivery.client_id == client_id)).all()
        db.session.rollback()
    return told


def _revoked(app, refresh_token: str) -> bool:
    with app.app_context():
        revoked_at = db.session.scalar(select(RefreshToken.revoked_at)
                                       .where(RefreshToken.token_hash == token_hash(refresh_token)))
        db.session.rollback()
    return revoked_at is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_ending_all_but_the_callers_grant_ends_a_grant_refused_by_its_version(app, flow_clients, client, version):
    set_client(app, "legacy", backchannel_logout_uri="https://legacy.example.com/logout")
    caller, other = password_grant(client), password_grant(client, user_agent="Other/1.0")
    _issued_under(app, other["refresh_token"], version)

    assert client.delete("/localapi/sessions", headers=bearer(caller["access_token"])).status_code == 204

    assert _revoked(app, other["refresh_token"]), "its family was left unrevoked"
    assert _told(app, "legacy") == ["ended_by_user"]
    assert [e["current"] for e in sessions_of(client, caller["access_token"])] == [True]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_page_ends_a_grant_refused_by_its_version_and_counts_what_it_listed(app, flow_clients, client, version):
    set_client(app, "legacy", backchannel_logout_uri="https://legacy.example.com/logout")
    here = browser(app)
    other = password_grant(client)
    _issued_under(app, other["refresh_token"], version)
    page = here.get("/account/sessions").get_data(as_text=True)

    response = here.post("/account/sessions", data={"csrf_token": csrf_token(page), "scope": "others"},
                         follow_redirects=True)

    assert response.status_code == 200
    shown = "Signed out everywhere else (1 ended)." if version == "current" else "Nothing else to sign out."
    assert shown in response.get_data(as_text=True)
    assert _revoked(app, other["refresh_token"]), "its family was left unrevoked"
    assert _told(app, "legacy") == ["ended_by_user"]


@pytest.mark.parametrize("moved_by", [[["users", "disable", "alice"], ["users", "enable", "alice"]],
                                      [["sessions", "end", "alice"]]], ids=["disable-enable", "sessions-end"])
def test_the_connected_apps_page_leaves_out_a_codes_access_token_refused_by_its_version(
        app, flow_clients, client, moved_by):
    """An access token of a code redeemed without offline_access, after a command that moved the
    user's password version on but changed no password: the bearer check refuses it, so the page,
    which lists an app holding only such a token (no consent remembered), leaves it out."""
    native, _ = OAuthActions(browser(app)).code_flow(client_id="native", scope="openid IdentityServerApi")
    token = native.get_json()["access_token"]
    for command in moved_by:
        result = app.test_cli_runner().invoke(args=command)
        assert result.exit_code == 0, result.output
    assert client.get("/connect/userinfo", headers=bearer(token)).status_code == 401
    assert "Native App" not in browser(app).get("/account/grants").get_data(as_text=True), \
        "the page lists an app whose access token the bearer check refuses"


def test_the_connected_apps_page_leaves_out_an_access_token_of_no_grant_refused_by_its_version(
        app, flow_clients, client):
    """Access tokens of no family (the implicit flow, the password grant without offline_access)
    after `users disable` and `users enable`: the bearer check refuses them by their version, and
    the page, which lists an app holding only such a token, leaves it out."""
    implicit = OAuthActions(browser(app)).authorize(client_id="implicit", response_type="id_token token",
                                                    scope="openid profile", nonce="n-version")
    tokens = [redirect_params(implicit.headers["Location"])["access_token"]]
    password = client.post("/connect/token", data={"grant_type": "password", "username": "alice",
                                                   "password": ALICE_PASSWORD, "scope": "openid IdentityServerApi"},
                           headers={"Authorization": LEGACY_BASIC})
    assert password.status_code == 200 and "refresh_token" not in password.get_json()
    tokens.append(password.get_json()["access_token"])
    for command in (["users", "disable", "alice"], ["users", "enable", "alice"]):
        result = app.test_cli_runner().invoke(args=command)
        assert result.exit_code == 0, result.output
    for token in tokens:
        assert client.get("/connect/userinfo", headers=bearer(token)).status_code == 401
    html = browser(app).get("/account/grants").get_data(as_text=True)
    assert "Implicit App" not in html and "Legacy App" not in html, \
        "the page lists an app whose access token the bearer check refuses"
