"""A signed-in user managing their account, and a second user reaching for the first one's
things: the grants page, the sessions page and the local API's sessions, with real sign-ins and
real tokens, checked in the database."""

import pytest
from sqlalchemy import func, select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, Client, LogoutDelivery, User
from test_sessions_devices import browser
from test_localapi_support import CHEAP_ARGON2
from mfa_actions import step_clock  # noqa: F401  (a fixture)


@pytest.fixture
def app_config():
    return {**CHEAP_ARGON2, "BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}


def set_client(app, client_id, **values):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(**values))
        db.session.commit()


def logout_tokens_for(app, username):
    """The (client, reason) of every logout token queued for the user."""
    with app.app_context():
        subject = db.session.scalar(select(User.subject).where(User.username == username))
        return db.session.execute(select(LogoutDelivery.client_id, LogoutDelivery.reason)
                                  .where(LogoutDelivery.subject == subject)).all()


def audited(app, event, username):
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        return db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.event == event, AuditEvent.user_id == user_id))


# --- the grants page ---------------------------------------------------------------------------


def test_revoking_an_app_that_holds_nothing_tells_it_nothing_and_says_so(app, client, flow_clients):
    """The page's form sent again (a second tab, a double submit), or a client id the user never
    used: the app already holds nothing of the user's. It is not sent another logout token (nor,
    for a user it never knew, their `sub`), and the page does not claim to have revoked anything."""
    set_client(app, "web", backchannel_logout_uri="https://web.example.com/backchannel-logout")
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    assert oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").status_code == 200
    form = {"csrf_token": csrf_token(client.get("/account/grants").get_data(as_text=True)), "client_id": "web"}

    first = client.post("/account/grants/revoke", data=form, follow_redirects=True)
    assert "Access revoked." in first.get_data(as_text=True)
    assert logout_tokens_for(app, "alice") == [("web", "grant_revoked")]

    again = client.post("/account/grants/revoke", data=form, follow_redirects=True)
    assert again.status_code == 200
    assert "Access revoked." not in again.get_data(as_text=True)
    assert "no access" in again.get_data(as_text=True)
    assert logout_tokens_for(app, "alice") == [("web", "grant_revoked")]
    assert audited(app, "consent_revoked", "alice") == 1

    bob = browser(app, username="bob", password=BOB_PASSWORD)
    never_used = bob.post("/account/grants/revoke", follow_redirects=True, data={
        "csrf_token": csrf_token(bob.get("/account/grants").get_data(as_text=True)), "client_id": "web"})
    assert "Access revoked." not in never_used.get_data(as_text=True)
    assert logout_tokens_for(app, "bob") == []
    assert audited(app, "consent_revoked", "bob") == 0


# --- the sessions list -------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS": 1000}])
def test_a_grant_past_its_absolute_lifetime_is_not_listed(app, client, flow_clients):
    """An app grant is a family with a usable refresh token. One whose family is past
    REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS (issued before the setting, or with a longer one) is
    refused by the refresh grant for good: the lists do not show it as an app still signed in."""
    from identity.models import RefreshToken
    from test_sessions_devices import password_grant, refresh, sessions_of

    ended, mine = password_grant(client), password_grant(client)
    with app.app_context():
        row = db.session.scalar(select(RefreshToken).order_by(RefreshToken.id).limit(1))
        db.session.execute(update(RefreshToken).where(RefreshToken.id == row.id)
                           .values(auth_time=row.auth_time - 2000, expires_at=row.auth_time + 3600))
        db.session.commit()
    assert refresh(client, ended["refresh_token"]).get_json()["error"] == "invalid_grant"

    entries = sessions_of(client, mine["access_token"])
    assert [(e["kind"], e["current"]) for e in entries] == [("app", True)]
    with app.test_request_context():
        from identity.services import devices
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        assert [e.current for e in devices.list_entries(user_id)] == [False]


# --- the passkeys ------------------------------------------------------------------------------


def test_removing_a_passkey_removed_already_says_so(app, client, flow_clients):
    """The factors page open in two tabs: the second "Remove" of the same passkey finds nothing.
    It stays a 404 (as for another user's), and the page says what happened, not "There is nothing
    at this address" as for a mistyped URL."""
    from identity.models import Passkey
    from test_passkeys_web import passkey_sign_in, register_over_http, token
    from webauthn_keys import SoftKey

    AuthActions(client).login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    AuthActions(client).logout()
    assert passkey_sign_in(client, key)[0].status_code == 302  # a sign-in with it: removal needs no code
    with app.app_context():
        passkey_id = db.session.scalar(select(Passkey.id))
    form = {"csrf_token": token(client, "/account/mfa")}
    assert client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data=form).status_code == 302

    again = client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data=form)

    assert again.status_code == 404
    html = again.get_data(as_text=True)
    assert "There is nothing at this address." not in html
    assert "removed already" in html
    assert audited(app, "passkey_removed", "alice") == 1


# --- two ends of one entry at once ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["app", "browser"])
def test_of_two_ends_of_one_entry_at_once_one_ends_it_and_the_other_is_told_it_had_ended(
        app, client, flow_clients, database_uri, monkeypatch, kind):
    """DELETE /localapi/sessions/{id} sent twice at once (a retried request, a double tap): the
    second found the entry live, then the first ended it. The second answered 204 as if it had
    ended it, and for a grant recorded a second `token_revoked` ended_by_user. It is now the 404
    of an entry that is not live, as when the two come one after the other; one event is kept."""
    from identity.services import devices
    from identity.store.connection import autocommit_connection
    from races import other_workers
    from test_sessions_devices import bearer, by_kind, password_grant, sessions_of

    with app.app_context():
        if autocommit_connection().is_sqlite:
            pytest.skip("PostgreSQL only: two workers' transactions interleaved")
    if kind == "browser":
        browser(app)
    target, mine = password_grant(client), password_grant(client)
    [entry] = [e for e in by_kind(sessions_of(client, mine["access_token"]), kind) if not e["current"]]
    url, headers = f"/localapi/sessions/{entry['id']}", bearer(mine["access_token"])
    real_end = devices._end
    with other_workers(database_uri) as (other,):
        first = {}

        def ended_meanwhile(user_id, found, by):
            if not first:  # the other worker's request ends it after this one listed it
                first["response"] = None  # (its own end goes straight through)
                first["response"] = other.test_client().delete(url, headers=headers)
            return real_end(user_id, found, by)

        monkeypatch.setattr(devices, "_end", ended_meanwhile)
        second = client.delete(url, headers=headers)

    assert first["response"].status_code == 204
    assert second.status_code == 404
    event, reason = ("token_revoked", "ended_by_user") if kind == "app" else ("session_ended", "ended_by_user")
    with app.app_context():
        details = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == event)).all()
    assert [d["reason"] for d in details] == [reason]
    assert target  # the grant ended was alice's other one


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS": 1000}])
def test_the_grants_page_does_not_list_an_app_whose_only_grant_is_past_its_absolute_lifetime(app, client,
                                                                                            flow_clients):
    """The grants page lists the apps that hold something of the user's. A refresh token whose
    family is past REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS is refused for good: an app that holds
    only that (its access tokens expired, no consent remembered) has no access left."""
    from identity.models import AuthorizationCode, Consent, RefreshToken

    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Consent)) == 0
        row = db.session.scalar(select(RefreshToken))
        # the sign-in, the code and its access token were 2,000 seconds ago
        db.session.execute(update(RefreshToken).values(auth_time=row.auth_time - 2000, issued_at=row.issued_at - 2000,
                                                       expires_at=row.auth_time + 3600))
        db.session.execute(update(AuthorizationCode).values(created_at=AuthorizationCode.created_at - 2000,
                                                             consumed_at=AuthorizationCode.consumed_at - 2000))
        db.session.commit()
    refused = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.get_json()["error"] == "invalid_grant"

    assert "No apps have access" in client.get("/account/grants").get_data(as_text=True)


# --- this browser's own session on the sessions page -------------------------------------------


def test_ending_this_browsers_own_session_on_the_page_signs_out_as_sign_out_does(app, client, flow_clients):
    """docs/sessions.md: ending a browser session signs it out as "Sign out" does. Ending this
    browser's own entry on the page ended the row and redirected to the sign-in page, but the
    apps it signed in to were not shown their front-channel logout pages, and the remember-me
    cookie stayed (Sign out deletes it)."""
    from test_logout_review import remember_cookies
    from test_sessions_devices import page_entries, post_page

    set_client(app, "web", frontchannel_logout_uri="https://web.example.com/frontchannel-logout")
    assert AuthActions(client).login(remember=True).status_code == 302
    oauth = OAuthActions(client)
    assert "code" in redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])
    [mine] = page_entries(client.get("/account/sessions").get_data(as_text=True))

    response = post_page(client, entry=mine)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'src="https://web.example.com/frontchannel-logout"' in html
    (cookie,) = remember_cookies(app, response)
    assert "Expires=Thu, 01 Jan 1970" in cookie
    assert client.get("/account/sessions").status_code == 302


def test_removing_a_passkey_that_is_not_there_spends_no_recovery_code(app, client, flow_clients, step_clock):
    """A session signed in with the password alone proves the second factor with a code to
    remove a passkey. For a passkey that is not the user's (removed already in another tab, or
    another user's id) the answer is a 404 and nothing is removed: the single-use recovery code
    sent with it must not be spent on nothing."""
    from identity.models import RecoveryCode
    from mfa_actions import enrol_user
    from test_passkeys_web import token

    assert AuthActions(client).login().status_code == 302  # the password alone, then the app is set up
    _, recovery_codes = enrol_user(app)
    refused = client.post("/account/mfa/passkeys/424242/remove",
                          data={"csrf_token": token(client, "/account/mfa"), "otp": recovery_codes[0]})

    assert refused.status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)
                                 .where(RecoveryCode.used_at.is_not(None))) == 0
