"""A rolling update (docs/deployment.md): the migrations run as a one-off job, then the instances
are replaced one by one, the previous release's serving until they are. Each test writes what the
previous release writes (rows, cookies) with this code's own pieces, and says which commit's
behaviour it stands for; the real releases side by side, on one database, found each defect."""

import subprocess
import sys

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import Client, LogoutDelivery, UserSession
from identity.store.browser_sessions import sid_digest
from conftest import BOB_PASSWORD, ROOT, csrf_token
from servers import server_env
from test_container_review import _set_revision
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


def _web_with_logout_uris(app) -> None:
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            frontchannel_logout_uri="https://web.example.com/fc", backchannel_logout_uri="https://web.example.com/bc"))
        db.session.commit()


def _signed_into_web(client) -> None:
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    assert oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").status_code == 200


def _row(app, row_id: int):
    with app.app_context():
        return db.session.execute(select(UserSession.public_sid, UserSession.revoked_at)
                                  .where(UserSession.id == row_id)).one()


def test_signing_in_again_at_the_new_release_leaves_no_session_of_the_previous_one_behind(app, client, flow_clients):
    """The person signed in, and into an app, at an instance of the previous release (2e9e60b^);
    this release, which cannot load that session, signs them in again in the same browser. The
    browser's cookie then names the new session only: as for a session of this release, the new
    one takes over the old one's public sid, which ends, so the app is told when they sign out.
    The old one stayed live at the previous release's instances, and the sign-out never told its
    app."""
    _web_with_logout_uris(app)
    AuthActions(client).login()
    _signed_into_web(client)
    sid = _cookie_sid(client)
    _as_the_previous_release_stored_it(app, sid)
    with app.app_context():
        row_id, public_sid = db.session.execute(select(UserSession.id, UserSession.public_sid)
                                                .where(UserSession.sid == sid)).one()

    assert AuthActions(client).login().status_code == 302
    with app.app_context():
        taken_over = db.session.scalar(select(UserSession.public_sid).where(UserSession.sid == sid_digest(_cookie_sid(client))))
    AuthActions(client).logout()
    with app.app_context():
        queued = db.session.scalars(select(LogoutDelivery.client_id)).all()
    assert _row(app, row_id).revoked_at is not None, "the session the previous release started outlived the sign-in again and the sign-out"
    assert taken_over == public_sid and queued == ["web"], f"its app was not told: {queued}"


def test_another_user_signing_in_ends_the_session_the_previous_release_started(app, client, flow_clients):
    """As test_signing_in_again..., but bob signs in over alice's session of the previous release
    (2e9e60b^): it ends, and its app is told (back-channel) and framed, as another user's session
    of this release is."""
    _web_with_logout_uris(app)
    AuthActions(client).login()
    _signed_into_web(client)
    sid = _cookie_sid(client)
    _as_the_previous_release_stored_it(app, sid)

    bob = AuthActions(client).login(username="bob", password=BOB_PASSWORD)
    with app.app_context():
        revoked_at = db.session.scalar(select(UserSession.revoked_at).where(UserSession.sid == sid))
        queued = db.session.scalars(select(LogoutDelivery.client_id)).all()
    assert revoked_at is not None and queued == ["web"], f"alice's session left live ({revoked_at}), told: {queued}"
    assert frames(bob.get_data(as_text=True)) == ["https://web.example.com/fc"]


def test_an_end_session_request_asks_before_ending_a_session_the_previous_release_started(app, client, flow_clients):
    """An end-session request without id_token_hint (any site can send the browser there) reaches
    an instance of this release; the browser's cookie names a session an instance of the previous
    release (2e9e60b^) started and still serves. RP-Initiated Logout 1.0 section 2: the OP MUST
    ask before it signs the person out then. This release took them for signed out already and
    cleared the cookie unasked (and ended the session), signing them out at the previous
    release's instances and their apps."""
    _web_with_logout_uris(app)
    AuthActions(client).login()
    _signed_into_web(client)
    sid = _cookie_sid(client)
    _as_the_previous_release_stored_it(app, sid)

    response = client.get("/connect/endsession")
    with app.app_context():
        revoked_at = db.session.scalar(select(UserSession.revoked_at).where(UserSession.sid == sid))
    assert revoked_at is None and 'name="csrf_token"' in response.get_data(as_text=True), \
        f"signed out unasked: {response.status_code}, session revoked at {revoked_at}"
    assert _cookie_sid(client) == sid, "the cookie was cleared unasked"

    confirmed = client.post("/connect/endsession", data={"csrf_token": csrf_token(response.get_data(as_text=True))})
    assert confirmed.status_code == 200 and frames(confirmed.get_data(as_text=True)) == ["https://web.example.com/fc"]


@pytest.mark.database_independent
@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "downgrade"]])
def test_the_migration_commands_say_a_newer_release_upgraded_the_schema_in_one_line(own_sqlite_app, command):
    """This release is the previous one in the next rolling update: that release's migration job
    has run, and this one's `flask db upgrade` runs meanwhile, as deployment.md's recipe has it
    ("before starting, and after each upgrade": a host or container of this release starting
    again), or its `db downgrade`. docs/cli.md promises such a command one line, `Error: database
    schema is at ..., a revision this code does not know ...`; the db commands printed Alembic's
    INFO lines and 'ERROR [flask_migrate] Error: Can't locate revision identified by ...'
    (ca5661f made the app's own commands say it). A real process: the `db` group is attached as
    a command line is parsed."""
    head = _set_revision(own_sqlite_app, "ffffffffffff")
    try:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *command], cwd=ROOT,
                                env=server_env(own_sqlite_app.config["SQLALCHEMY_DATABASE_URI"]),
                                capture_output=True, text=True, timeout=120)
    finally:
        _set_revision(own_sqlite_app, head)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "a revision this code does not know" in lines[0], \
        f"exit {result.returncode}: {lines}"
