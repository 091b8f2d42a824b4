"""The operator's switches: clients update / disable / enable, users disable / enable / unlock.

In-process (CliRunner, the test client) on the suite's database, SQLite or PostgreSQL; and
against a running two-worker gunicorn, where the command must take effect on every worker by the
time it returns.
"""

import base64
import json

import pytest
from sqlalchemy import select, update

from conftest import ALICE_PASSWORD, empty_database
from identity.clock import now
from identity.extensions import db
from identity.web.account import SIGN_IN_FAILED
from identity.models import AuditEvent, Client, RefreshToken, User, UserSession
from identity.services import accounts
from identity.services.seed import apply_seed, load_seed
from servers import password_grant_seed, seeded_server, sign_in, token_request

SECRET = "operator-secret-0123456789"
APP = {"client_id": "ops-app", "client_name": "Ops App", "client_secrets": [SECRET],
       "allowed_grant_types": ["password"], "allow_offline_access": True,
       "allowed_scopes": ["openid", "offline_access", "IdentityServerApi"]}
READER = {"client_id": "reader", "client_secrets": ["reader-secret-0123456789"],
          "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]}
WRONG_PASSWORD = "not-the-password-at-all-42"


@pytest.fixture
def operated(seeded, app):
    """The demo seed (alice) plus a password-grant client with refresh tokens and a second client."""
    with app.app_context():
        apply_seed(load_seed(json.dumps({"clients": [APP, READER]})))
    yield app
    # nothing disabled is left behind for a server test that seeds the same (PostgreSQL) database
    empty_database(app)


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def password_tokens(client, username="alice", password=ALICE_PASSWORD):
    return client.post("/connect/token", headers=basic("ops-app", SECRET), data={
        "grant_type": "password", "username": username, "password": password,
        "scope": "openid offline_access IdentityServerApi"})


def local_api(client, token):
    return client.get("/localapi/account", headers={"Authorization": f"Bearer {token}"})


def introspect(client, token):
    return client.post("/connect/introspect", data={"token": token}, headers=basic("reader", READER["client_secrets"][0]))


def events(app, name):
    with app.app_context():
        found = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))
        db.session.remove()
        return found


def row(app, model, **where):
    with app.app_context():
        found = db.session.scalar(select(model).filter_by(**where))
        db.session.expunge_all()
        return found


def login_page(client, username, password):
    from actions import AuthActions

    return AuthActions(client).login(username=username, password=password)


# --- users disable / enable ---------------------------------------------------------------------


def test_a_disabled_user_is_refused_everywhere_at_once(operated, client, runner):
    app = operated
    tokens = password_tokens(client).get_json()
    assert local_api(client, tokens["access_token"]).status_code == 200
    assert login_page(client, "alice", ALICE_PASSWORD).status_code == 302  # a browser session, too

    result = runner.invoke(args=["users", "disable", "alice"])
    assert result.exit_code == 0, result.output
    assert result.output == "User alice is now disabled; their sessions and tokens were revoked.\n"

    assert local_api(client, tokens["access_token"]).status_code == 401  # the access token
    assert introspect(client, tokens["access_token"]).get_json() == {"active": False}
    refreshed = client.post("/connect/token", headers=basic("ops-app", SECRET),
                            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    assert client.get("/account/password").status_code == 302  # the browser session ended: sign in again
    user = row(app, User, username="alice")
    assert user.enabled is False and user.disabled_at
    with app.app_context():
        assert db.session.scalar(select(UserSession).where(UserSession.user_id == user.id,
                                                           UserSession.revoked_at.is_(None))) is None
        assert all(r.revoked_at for r in db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)))
        db.session.remove()
    assert [e.user_id for e in events(app, "user_disabled")] == [user.id]


def test_a_disabled_user_gets_the_wrong_password_answer(operated, client, runner):
    """No enumeration: a disabled account with its right password reads like a wrong password."""
    wrong = login_page(operated.test_client(), "alice", WRONG_PASSWORD)
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    disabled = login_page(operated.test_client(), "alice", ALICE_PASSWORD)
    assert disabled.status_code == wrong.status_code == 400
    assert SIGN_IN_FAILED in disabled.get_data(as_text=True) and SIGN_IN_FAILED in wrong.get_data(as_text=True)
    token = password_tokens(client)
    assert token.status_code == 400
    assert token.get_json() == password_tokens(client, password=WRONG_PASSWORD).get_json()
    # a disabled user's attempts are not counted toward lockout: only the one made before
    assert row(operated, User, username="alice").failed_attempts == 1
    reasons = [e.detail["reason"] for e in events(operated, "sign_in_failed")]
    assert reasons == ["bad_password"] + ["disabled"] * 3  # the page, then the two token requests


def test_enable_lets_the_user_sign_in_again(operated, client, runner):
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert password_tokens(client).status_code == 400
    result = runner.invoke(args=["users", "enable", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"username": "alice", "enabled": True, "changed": True}
    assert password_tokens(client).status_code == 200
    user = row(operated, User, username="alice")
    assert user.enabled is True and user.disabled_at is None
    assert len(events(operated, "user_enabled")) == 1


def test_what_a_disable_revoked_does_not_come_back_on_enable(operated, client, runner):
    """The access token and a half-finished sign-in (password right, second step pending) from
    before the disable stay refused once the user is enabled again."""
    tokens = password_tokens(client)
    assert tokens.status_code == 200
    with operated.app_context():
        version = db.session.scalar(select(User.password_version).where(User.username == "alice"))
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "alice"]).exit_code == 0
    assert local_api(client, tokens.get_json()["access_token"]).status_code == 401
    assert introspect(client, tokens.get_json()["access_token"]).get_json() == {"active": False}
    with operated.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        assert accounts.pending_user(user_id, version, now(), "a-pending-id") is None
    assert local_api(client, password_tokens(client).get_json()["access_token"]).status_code == 200

def test_switching_twice_changes_nothing_the_second_time(operated, runner):
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    again = runner.invoke(args=["users", "disable", "alice", "--json"])
    assert again.exit_code == 0
    assert json.loads(again.output) == {"username": "alice", "enabled": False, "changed": False}
    assert len(events(operated, "user_disabled")) == 1
    assert runner.invoke(args=["users", "enable", "alice"]).output == "User alice is now enabled.\n"
    assert runner.invoke(args=["users", "enable", "alice"]).output == "User alice was already enabled.\n"


@pytest.mark.parametrize("command", ["disable", "enable", "unlock"])
def test_an_unknown_user_is_one_line_and_exit_1(operated, runner, command):
    result = runner.invoke(args=["users", command, "ghost"])
    assert result.exit_code == 1
    assert result.output == "Error: no user 'ghost'\n"


# --- users unlock ----------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 3}])
def test_unlock_clears_the_lock_and_the_count(operated, client, runner):
    for _ in range(3):
        password_tokens(client, password=WRONG_PASSWORD)
    assert password_tokens(client).status_code == 400  # locked, the right password too
    assert row(operated, User, username="alice").locked_until > 0
    result = runner.invoke(args=["users", "unlock", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"username": "alice", "changed": True}
    user = row(operated, User, username="alice")
    assert (user.failed_attempts, user.locked_until) == (0, 0)
    assert password_tokens(client).status_code == 200
    [event] = events(operated, "user_unlocked")
    assert event.detail == {"username": "alice", "was_locked": True}
    assert runner.invoke(args=["users", "unlock", "alice"]).output == "User alice was not locked.\n"
    assert len(events(operated, "user_unlocked")) == 1  # nothing to change: nothing audited (docs/cli.md)


# --- clients update / disable / enable --------------------------------------------------------------


def test_update_changes_only_the_given_fields(operated, runner):
    before = row(operated, Client, client_id="ops-app")
    result = runner.invoke(args=["clients", "update", "ops-app", "--name", "Ops App 2",
                                 "--scope", "openid", "--scope", "IdentityServerApi", "--access-token-lifetime", "900"])
    assert result.exit_code == 0, result.output
    assert result.output == "Updated client ops-app: client_name, allowed_scopes, access_token_lifetime.\n"
    after = row(operated, Client, client_id="ops-app")
    assert (after.client_name, after.allowed_scopes, after.access_token_lifetime) == (
        "Ops App 2", ["openid", "IdentityServerApi"], 900)
    for same in ("secret_hashes", "allowed_grant_types", "allow_offline_access", "redirect_uris", "enabled"):
        assert getattr(after, same) == getattr(before, same), same
    [event] = events(operated, "client_updated")
    assert event.client_id == "ops-app" and event.detail == {
        "fields": ["client_name", "allowed_scopes", "access_token_lifetime"]}


def test_update_json_and_no_change(operated, runner):
    result = runner.invoke(args=["clients", "update", "ops-app", "--offline-access", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {"client_id": "ops-app", "changed": [], "result": "unchanged"}
    assert events(operated, "client_updated") == []
    off = runner.invoke(args=["clients", "update", "ops-app", "--no-offline-access", "--json"])
    assert json.loads(off.output)["changed"] == ["allow_offline_access"]


@pytest.mark.parametrize(("args", "message"), [
    (["--grant-type", "teleport"], "Error: client 'ops-app' allowed_grant_types.0: unknown grant type 'teleport'"),
    (["--scope", "nonexistent"], "Error: allowed_scopes: unknown scope 'nonexistent'"),
    (["--access-token-lifetime", "5"], "Error: client 'ops-app' access_token_lifetime:"),
    (["--grant-type", "authorization_code"], "Error: client 'ops-app' redirect_uris: browser-based grant types"),
])
def test_update_validates_as_add_does(operated, runner, args, message):
    result = runner.invoke(args=["clients", "update", "ops-app", *args])
    assert result.exit_code == 1
    assert result.output.startswith(message), result.output
    assert len(result.output.splitlines()) == 1
    assert row(operated, Client, client_id="ops-app").allowed_grant_types == ["password"]


def test_update_needs_a_field_and_a_known_client(operated, runner):
    assert runner.invoke(args=["clients", "update", "ops-app"]).exit_code == 2
    unknown = runner.invoke(args=["clients", "update", "ghost", "--name", "x"])
    assert (unknown.exit_code, unknown.output) == (1, "Error: no client 'ghost'\n")


def test_a_disabled_client_and_its_tokens_are_refused(operated, client, runner):
    tokens = password_tokens(client).get_json()
    assert local_api(client, tokens["access_token"]).status_code == 200
    result = runner.invoke(args=["clients", "disable", "ops-app"])
    assert result.exit_code == 0, result.output
    assert result.output == "Client ops-app is now disabled; its requests and tokens are refused on every worker.\n"

    assert local_api(client, tokens["access_token"]).status_code == 401
    assert introspect(client, tokens["access_token"]).get_json() == {"active": False}
    assert password_tokens(client).status_code == 401  # token requests: invalid_client
    refreshed = client.post("/connect/token", headers=basic("ops-app", SECRET),
                            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401 and refreshed.get_json()["error"] == "invalid_client"
    authorize = client.get("/connect/authorize?client_id=spa&response_type=code&scope=openid"
                           "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback")
    assert authorize.status_code == 302 or authorize.status_code == 200  # spa is still enabled
    assert runner.invoke(args=["clients", "disable", "spa"]).exit_code == 0
    refused = client.get("/connect/authorize?client_id=spa&response_type=code&scope=openid"
                         "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback")
    assert refused.status_code == 400  # an unknown or disabled client: never redirected to
    disabled = row(operated, Client, client_id="ops-app")
    assert disabled.enabled is False and disabled.disabled_at
    assert [e.client_id for e in events(operated, "client_disabled")] == ["ops-app", "spa"]

    enabled = runner.invoke(args=["clients", "enable", "ops-app", "--json"])
    assert json.loads(enabled.output) == {"client_id": "ops-app", "enabled": True, "changed": True}
    assert local_api(client, tokens["access_token"]).status_code == 200  # not revoked, only refused meanwhile
    assert row(operated, Client, client_id="ops-app").disabled_at is None


# --- the seed file's optional `enabled` ----------------------------------------------------------------


def test_the_seed_may_disable_and_otherwise_leaves_the_switch_alone(operated, client, runner, tmp_path):
    seed = tmp_path / "seed.json"
    alice = {"username": "alice", "email": "alice@example.com", "password": ALICE_PASSWORD, "name": "Alice Example"}
    seed.write_text(json.dumps({"clients": [{**APP, "enabled": False}], "users": [{**alice, "enabled": False}]}))
    tokens = password_tokens(client).get_json()
    result = runner.invoke(args=["seed", str(seed)])
    assert result.exit_code == 0, result.output
    assert "updated user alice (disabled)" in result.output
    assert row(operated, Client, client_id="ops-app").enabled is False
    assert row(operated, User, username="alice").enabled is False
    assert local_api(client, tokens["access_token"]).status_code == 401

    seed.write_text(json.dumps({"clients": [APP], "users": [alice]}))  # no `enabled`: as it is
    assert runner.invoke(args=["seed", str(seed)]).exit_code == 0
    assert row(operated, Client, client_id="ops-app").enabled is False
    assert row(operated, User, username="alice").enabled is False


# --- a running server: two workers, right after the command -------------------------------------------


@pytest.mark.server
def test_a_running_server_refuses_at_once_on_every_worker(tmp_path):
    """BEARER_CACHE_SECONDS and CLIENT_CACHE_SECONDS as in production: both workers have seen the
    tokens twice (so each may answer from memory), and the next request after the command is refused."""
    seed = password_grant_seed("ops-app", SECRET, "mia", ALICE_PASSWORD, offline_access=True)
    seed["clients"].append({**password_grant_seed("other", SECRET, "zoe", ALICE_PASSWORD)["clients"][0]})
    seed["users"].append(password_grant_seed("other", SECRET, "zoe", ALICE_PASSWORD)["users"][0])
    for item in seed["clients"] + seed["users"]:  # on PostgreSQL the database is shared with earlier tests
        item["enabled"] = True
    with seeded_server(tmp_path, seed, name="operators") as server:
        def token(client_id, username):
            response = token_request(server.url, client_id, SECRET, grant_type="password", username=username,
                                     password=ALICE_PASSWORD, scope="openid IdentityServerApi")
            assert response.status_code == 200, response.text
            return response.json()["access_token"]

        import requests

        def api(access_token):
            return requests.get(server.url + "/localapi/account", timeout=10,
                                headers={"Authorization": f"Bearer {access_token}", "Connection": "close"})

        mia, zoe = token("ops-app", "mia"), token("other", "zoe")
        for _ in range(12):  # both workers, each more than once: their memories hold the answers
            assert api(mia).status_code == 200 and api(zoe).status_code == 200

        disabled = server.cli(["users", "disable", "mia", "--json"])
        assert json.loads(disabled.stdout) == {"username": "mia", "enabled": False, "changed": True}
        assert [api(mia).status_code for _ in range(8)] == [401] * 8
        browser = requests.Session()
        assert sign_in(browser, server.url, "mia", ALICE_PASSWORD).status_code == 400  # as a wrong password

        server.cli(["clients", "disable", "other"])
        assert [api(zoe).status_code for _ in range(8)] == [401] * 8
        assert token_request(server.url, "other", SECRET, grant_type="password", username="zoe",
                             password=ALICE_PASSWORD).status_code == 401


# --- --json on every command, and one-line errors ------------------------------------------------------


def test_every_command_has_json_output(operated, runner, tmp_path):
    def run(*args, input=None):
        result = runner.invoke(args=[*args, "--json"], input=input)
        assert result.exit_code == 0, (args, result.output)
        [line] = result.output.splitlines()  # one line: one JSON value
        return json.loads(line)

    added = run("clients", "add", "reports", "--grant-type", "client_credentials", "--scope", "IdentityServerApi")
    assert added["client_id"] == "reports" and len(added["client_secret"]) > 20
    listed = {c["client_id"]: c for c in run("clients", "list")}
    assert listed["reports"] == {"client_id": "reports", "client_name": "reports", "public": False, "enabled": True,
                                 "grant_types": ["client_credentials"], "scopes": ["IdentityServerApi"]}
    assert run("clients", "remove", "reports") == {"client_id": "reports", "removed": True}
    assert run("users", "add", "bob", input="violet-anchor-meadow-58\n") == {"username": "bob", "added": True}
    assert {u["username"]: u["enabled"] for u in run("users", "list")} == {"alice": True, "bob": True}
    assert run("users", "set-password", "bob", input="copper-lantern-orchard-73\n") == {
        "username": "bob", "password_set": True}
    assert run("users", "remove", "bob") == {"username": "bob", "removed": True}
    assert run("scopes", "add", "reports.read") == {"name": "reports.read", "added": True}
    assert "reports.read" in [s["name"] for s in run("scopes", "list")]
    assert run("scopes", "remove", "reports.read") == {"name": "reports.read", "removed": True}
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"clients": [APP]}))
    assert run("seed", str(seed)) == {"created": [], "updated": [], "unchanged": 1}
    assert [k["state"] for k in run("keys", "list")].count("current") >= 1
    assert all(k["kid"] for k in run("keys", "rotate"))
    reencrypted = run("keys", "reencrypt")
    count = reencrypted["reencrypted"]
    assert count >= 2 and reencrypted["totp_secrets"] == 0
    assert [e.detail for e in events(operated, "keys_reencrypted")] == [{"count": count, "totp_secrets": 0}]


def test_several_problems_are_still_one_line(operated, runner):
    result = runner.invoke(args=["clients", "add", "bad client", "--grant-type", "teleport", "--public"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert "client_id" in result.output and "teleport" in result.output


def test_a_refresh_token_issued_under_a_password_since_changed_is_inactive_at_introspection(operated, client):
    """A refresh token stored while a password change ran (which its revocation could not see) is
    refused by the refresh grant, as issued under the old password; introspection still called it
    active, so a resource server or gateway that asks went on trusting it."""
    tokens = password_tokens(client).get_json()
    owner = basic("ops-app", SECRET)
    assert client.post("/connect/introspect", data={"token": tokens["refresh_token"]},
                       headers=owner).get_json()["active"] is True
    with operated.app_context():  # what the race leaves: the version moved on, this token not revoked
        db.session.execute(update(User).where(User.username == "alice")
                           .values(password_version=User.password_version + 1))
        db.session.commit()
    assert client.post("/connect/introspect", data={"token": tokens["refresh_token"]},
                       headers=owner).get_json() == {"active": False}
    refreshed = client.post("/connect/token", headers=owner,
                            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    assert row(operated, RefreshToken, revoked_at=None, consumed_at=None) is not None  # not revoked: refused by its version
