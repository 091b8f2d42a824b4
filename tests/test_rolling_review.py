"""A rolling update (docs/deployment.md): the migrations run as a one-off job, then the instances
are replaced one by one, the previous release's serving until they are. Each test writes what the
previous release writes (rows, cookies) with this code's own pieces, and says which commit's
behaviour it stands for; the real releases side by side, on one database, found each defect."""

from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import Client, LogoutDelivery, UserSession
from identity.store.browser_sessions import sid_digest
from test_frontchannel_logout import frames


def _cookie_sid(client) -> str:
    with client.session_transaction() as cookie:
        return cookie["_user_id"]


def _as_the_previous_release_stored_it(app, sid: str) -> None:
    """The session row as a release before b8d4f1a6c3e9 writes it (2e9e60b^: user_sessions.sid is
    the cookie's sid itself, not its SHA-256): one such instance started this browser's session
    after the migration job had run, while the update went on."""
    with app.app_context():
        changed = db.session.execute(update(UserSession).where(UserSession.sid == sid_digest(sid))
                                     .values(sid=sid)).rowcount
        db.session.commit()
    assert changed == 1


def test_signing_out_at_the_new_release_ends_a_session_the_previous_release_started(app, client, flow_clients):
    """The person signed in (and into an app) at an instance of the previous release (2e9e60b^),
    then signs out at one of this release: its sign-out must end that session, or the previous
    release's instances, still serving, keep it signed in (a copy of the cookie works there),
    and its apps are never told (no back-channel token, no front-channel frame)."""
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            frontchannel_logout_uri="https://web.example.com/fc", backchannel_logout_uri="https://web.example.com/bc"))
        db.session.commit()
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    assert oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").status_code == 200
    sid = _cookie_sid(client)
    _as_the_previous_release_stored_it(app, sid)

    response = AuthActions(client).logout()
    assert response.status_code == 200
    with app.app_context():
        revoked_at = db.session.scalar(select(UserSession.revoked_at).where(UserSession.sid == sid))
        queued = db.session.scalars(select(LogoutDelivery.client_id)).all()
    assert revoked_at is not None, "the session the previous release started stayed live after the sign-out"
    assert queued == ["web"], f"its app was not told (back-channel): {queued}"
    assert frames(response.get_data(as_text=True)) == ["https://web.example.com/fc"], "nor framed (front-channel)"
