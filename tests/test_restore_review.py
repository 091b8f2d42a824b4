"""A restore or downgrade under a running server (docs/deployment.md, "Backups, restores and
downgrades"): what comes back, what the workers' memories do with it, and the repairs the docs name."""

import time

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD
from identity.extensions import db
from identity.models import Client, LogoutDelivery, SessionClient, User
from restore_review_support import backup, restore


def _set_client(app, client_id, **values):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(**values))
        db.session.commit()
        db.session.remove()


def _web_code(client):
    response = OAuthActions(client).authorize(client_id="web", scope="openid profile")
    assert response.status_code == 302, response.get_data(as_text=True)
    return redirect_params(response.headers["Location"])["code"]


def test_a_session_signing_in_to_an_app_again_after_a_restore_still_tells_it_of_the_sign_out(
        app, client, flow_clients, tmp_path):
    _set_client(app, "web", backchannel_logout_uri="https://web.example.com/bc")
    AuthActions(client).login()
    saved = backup(app, tmp_path)  # the session is live; it has not signed in to `web` yet
    _web_code(client)  # recorded: the session issued to `web`
    restore(app, saved)  # the record is gone with everything since the backup
    _web_code(client)  # the same session signs in to `web` again
    with app.app_context():
        recorded = list(db.session.scalars(select(SessionClient.client_id)))
        db.session.remove()
    assert recorded == ["web"], f"the session's sign-in to web after the restore was not recorded: {recorded}"
    assert AuthActions(client).logout().status_code == 200
    with app.app_context():
        queued = list(db.session.scalars(select(LogoutDelivery.client_id)))
        db.session.remove()
    assert queued == ["web"], f"the sign-out queued no logout token for web: {queued}"


def _bob_access_token(client, password):
    response = OAuthActions(client).token("legacy", grant_type="password", username="bob", password=password,
                                          scope="openid IdentityServerApi")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def _account(client, token):
    return client.get("/localapi/account", headers={"Authorization": f"Bearer {token}"}).status_code


def _set_password(runner, username, password):
    result = runner.invoke(args=["users", "set-password", username], input=f"{password}\n" * 2)
    assert result.exit_code == 0, result.output


def test_repeating_set_password_after_a_restore_does_not_bring_back_tokens_of_a_password_it_replaced(
        app, client, runner, flow_clients, tmp_path, monkeypatch):
    from identity.services import accounts, tokens

    assert client.get("/.well-known/openid-configuration/jwks").status_code == 200  # the signing keys exist
    with app.app_context():  # registered, and bob's password set, long before
        db.session.execute(update(Client).where(Client.client_id == "legacy").values(created_at=Client.created_at - 3600))
        db.session.execute(update(User).where(User.username == "bob").values(
            password_changed_at=User.password_changed_at - 3600))
        db.session.commit()
        db.session.remove()
    saved = backup(app, tmp_path)
    with monkeypatch.context() as earlier:  # since the backup, some minutes before the restore
        for module in (accounts, tokens):
            earlier.setattr(module, "now", lambda: int(time.time()) - 300)
        _set_password(runner, "bob", "taken-over-by-someone-else-77")  # the account taken over
        stolen = _bob_access_token(client, "taken-over-by-someone-else-77")
        _set_password(runner, "bob", "the-operators-answer-to-it-88")  # the operator's answer, audited
        assert _account(client, stolen) == 401
    restore(app, saved)  # for another reason: the password is the one of the backup again (documented)
    _set_password(runner, "bob", "the-operators-answer-to-it-88")  # the repair the docs name, from the audit log
    status = _account(client, stolen)
    assert status == 401, f"the taken-over password's token was accepted again after the repair: {status}"
    assert _account(client, _bob_access_token(client, "the-operators-answer-to-it-88")) == 200


def _end_sessions(runner, username):
    result = runner.invoke(args=["sessions", "end", username])
    assert result.exit_code == 0, result.output


def test_repeating_sessions_end_after_a_restore_refuses_the_access_tokens_issued_since_the_backup(
        app, client, runner, flow_clients, tmp_path):
    assert client.get("/.well-known/openid-configuration/jwks").status_code == 200  # the signing keys exist
    saved = backup(app, tmp_path)
    stolen = _bob_access_token(client, BOB_PASSWORD)  # since the backup: someone signs in as bob
    _end_sessions(runner, "bob")  # the operator signs bob out everywhere, audited
    assert _account(client, stolen) == 401
    restore(app, saved)  # for another reason
    _end_sessions(runner, "bob")  # the repair the docs name, from the audit log
    status = _account(client, stolen)
    assert status == 401, f"an access token issued since the backup outlived the repeated sessions end: {status}"
    assert _account(client, _bob_access_token(client, BOB_PASSWORD)) == 200  # bob signs in again
