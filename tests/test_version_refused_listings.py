"""A refresh token issued under a password version its user no longer has is refused by the
token endpoint and by introspection; the lists of live grants leave it out too: the sessions and
devices list (GET /localapi/sessions, the page) and the connected apps page (and its revocation,
which revokes only what the page lists). Its app is still told of a removed user's end
(back-channel logout): its family was never ended, so the app was never told, and may still hold
her sign-in.
Such a token is one the previous release let outlive a change: made here by setting its row's
version back. On both databases."""

import pytest
from sqlalchemy import select, update

from conftest import csrf_token
from identity.extensions import db
from identity.models import AuditEvent, LogoutDelivery, RefreshToken, User
from identity.services.tokens import token_hash
from test_backchannel_logout import set_client
from test_localapi_support import CHEAP_ARGON2
from test_sessions_devices import browser, by_kind, password_grant, refresh, sessions_of

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
