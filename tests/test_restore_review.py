"""A restore or downgrade under a running server (docs/deployment.md, "Backups, restores and
downgrades"): what comes back, what the workers' memories do with it, and the repairs the docs name."""

import json
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


@pytest.mark.database_independent
def test_the_sqlite_restore_the_guide_gives_takes_a_running_server_back_to_the_backup(own_sqlite_app, tmp_path):
    """deployment.md said how to back SQLite up online, not how to restore it. Moving the copy over
    the file under a running server changes nothing it serves (its connections keep the old file)
    and pairs the copy with the old file's write-ahead log, whose pages are then read as the copy's;
    `sqlite3 identity.db ".restore copy.db"` goes through SQLite, under the running server too."""
    import re
    import shutil
    import sqlite3
    import subprocess
    import threading
    from pathlib import Path

    section = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = section.split("## Backups, restores and downgrades", 1)[1].split("\n## ", 1)[0]
    commands = [found.group(1) for found in re.finditer(r'`sqlite3 identity\.db ((?:"[^"]+" ?)+)`', section.replace("\n", " "))
                if ".restore copy.db" in found.group(1)]
    assert commands, "the restore section gives no way to restore a SQLite database"
    arguments = [argument.replace("copy.db", str(tmp_path / "copy.db")) for argument in re.findall(r'"([^"]+)"', commands[0])]
    assert "-wal" in section, "the restore section does not warn against moving a copy over the file"
    path = own_sqlite_app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    runner = own_sqlite_app.test_cli_runner()

    def add(name):
        result = runner.invoke(args=["users", "add", name, "--email", f"{name}@example.com"],
                               input="a-long-enough-passphrase-123\n" * 2)
        assert result.exit_code == 0, result.output

    add("carol")
    subprocess.run(["sqlite3", path, f'.backup {tmp_path / "copy.db"}'], check=True, timeout=30)
    add("dave")  # since the backup
    assert shutil.which("sqlite3")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # a write of the server's under way as the restore starts
    done = threading.Timer(1.0, lambda: writer.execute("COMMIT"))
    done.start()
    restored = subprocess.run(["sqlite3", path, *arguments], capture_output=True, text=True, timeout=30)
    done.join()
    writer.close()
    assert restored.returncode == 0, f"the guide's restore failed under a running server: {restored.stderr.strip()}"
    listed = runner.invoke(args=["users", "list", "--json"])
    assert [user["username"] for user in json.loads(listed.output)] == ["carol"], listed.output
    add("erin")  # the running app writes to the restored database
    with own_sqlite_app.app_context():
        assert sorted(db.session.scalars(select(User.username))) == ["carol", "erin"]
        db.session.remove()


@pytest.mark.database_independent
def test_an_instance_kept_out_of_service_by_a_key_it_cannot_decrypt_says_which_and_what_to_do(app, client, caplog):
    """A backup restored where KEY_ENCRYPTION_KEY is not the one its signing keys were encrypted
    under (another environment's, or a key rotated away since the backup): /readyz answers 503, so
    the balancer sends the instance no request, and no request logs the keys' own error. Its log
    said only `not ready: signing key not available: UndecryptableKey`."""
    import logging

    from cryptography.fernet import Fernet

    assert client.get("/.well-known/openid-configuration/jwks").status_code == 200  # the keys are made
    app.config["KEY_ENCRYPTION_KEY"] = [Fernet.generate_key().decode()]
    app.extensions.pop("identity_keyring", None)  # a worker started on the restored database
    app.extensions.pop("identity_key_encryption", None)
    caplog.set_level(logging.WARNING)
    response = client.get("/readyz")
    assert response.status_code == 503
    said = [r.getMessage() for r in caplog.records if r.name == "identity.readiness"]
    assert any("cannot be decrypted with any KEY_ENCRYPTION_KEY" in line for line in said), \
        f"the readiness log does not say which key and what to do: {said}"
    assert "KEY_ENCRYPTION_KEY" not in response.get_data(as_text=True)  # anyone may read /readyz
