"""A restore or downgrade under a running server (docs/deployment.md, "Backups, restores and
downgrades"): what comes back, what the workers' memories do with it, and the repairs the docs name."""

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import Client, LogoutDelivery, SessionClient
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
