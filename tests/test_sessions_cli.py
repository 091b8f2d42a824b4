"""The operator's `sessions list USER` and `sessions end USER [ID]`: one line of result (or JSON),
audited, a one-line error and a non-zero exit for an unknown user or id."""

import json

import pytest
from sqlalchemy import select

from actions import OAuthActions
from identity.extensions import db
from identity.models import AuditEvent
from test_localapi_support import CHEAP_ARGON2, bearer
from test_sessions_devices import ALICE_PASSWORD, BOB_PASSWORD, LEGACY_BASIC, browser, password_grant, refresh, sessions_of


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


@pytest.fixture
def signed_in(app, flow_clients, client):
    """alice in a browser and in two app grants; bob in one app grant."""
    return {"browser": browser(app), "grants": [password_grant(client), password_grant(client)],
            "bob": password_grant(client, "bob", BOB_PASSWORD)}


def audit_events(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize("command", [["sessions"], ["sessions", "list"], ["sessions", "end"]], ids=" ".join)
def test_the_commands_have_help(runner, command):
    result = runner.invoke(args=[*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert result.output.split("\n\n", 2)[1].strip()


def test_list_prints_a_line_an_entry_and_is_audited(app, runner, signed_in):
    result = runner.invoke(args=["sessions", "list", "alice"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert sorted(line.split("\t")[1] for line in lines) == ["app", "app", "browser"]
    assert any("Firefox on Linux" in line and "203.0.113.0/24" in line for line in lines)
    [event] = audit_events(app, "sessions_listed")
    assert event.detail == {"by": "operator", "count": 3}


def test_list_json(runner, signed_in):
    result = runner.invoke(args=["sessions", "list", "alice", "--json"])

    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert {e["kind"] for e in entries} == {"app", "browser"}
    assert {"id", "kind", "client_id", "client_name", "created_at", "last_used_at"} <= set(entries[0])


def test_end_one_entry(app, client, runner, signed_in):
    victim, kept = signed_in["grants"]
    entries = sessions_of(client, kept["access_token"])
    target = next(e for e in entries if not e["current"] and e["kind"] == "app")

    result = runner.invoke(args=["sessions", "end", "alice", target["id"]])

    assert result.exit_code == 0, result.output
    assert result.output == "Ended 1 session(s) and grant(s) of alice.\n"
    assert refresh(client, victim["refresh_token"]).status_code == 400
    assert client.get("/localapi/account", headers=bearer(victim["access_token"])).status_code == 401
    assert client.get("/localapi/account", headers=bearer(kept["access_token"])).status_code == 200
    assert [e.detail["reason"] for e in audit_events(app, "token_revoked")] == ["ended_by_operator"]


def test_end_without_id_ends_all_of_the_users(app, client, runner, signed_in):
    result = runner.invoke(args=["sessions", "end", "alice", "--json"])

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["ended"]) == 3
    assert signed_in["browser"].get("/account/sessions").status_code == 302
    for grant in signed_in["grants"]:
        assert refresh(client, grant["refresh_token"]).status_code == 400
    assert client.get("/localapi/account", headers=bearer(signed_in["bob"]["access_token"])).status_code == 200
    assert [e.detail["reason"] for e in audit_events(app, "session_ended")] == ["ended_by_operator"]


@pytest.mark.parametrize("args, message", [
    (["sessions", "list", "nobody"], "Error: no user 'nobody'\n"),
    (["sessions", "end", "nobody"], "Error: no user 'nobody'\n"),
    (["sessions", "end", "alice", "app_unknown"], "Error: no such session\n"),
])
def test_errors_are_one_line_and_exit_non_zero(runner, signed_in, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert result.output == message


def test_another_users_id_is_unknown(client, runner, signed_in):
    [bobs] = sessions_of(client, signed_in["bob"]["access_token"])
    result = runner.invoke(args=["sessions", "end", "alice", bobs["id"]])
    assert result.exit_code != 0 and result.output == "Error: no such session\n"
    assert client.get("/localapi/account", headers=bearer(signed_in["bob"]["access_token"])).status_code == 200


def test_end_without_id_ends_the_users_access_tokens_of_no_grant(app, client, runner, signed_in):
    """docs/mfa.md: when a phone was stolen, sign the user out everywhere (`sessions end USER`).
    An access token of no grant (the password grant without offline_access, the implicit flow)
    is no entry, and it kept working until it expired (up to a day) after the command said the
    user was signed out everywhere; revoking the app on the grants page ends such tokens."""
    response = client.post("/connect/token", data={
        "grant_type": "password", "username": "alice", "password": ALICE_PASSWORD,
        "scope": "openid IdentityServerApi"}, headers={"Authorization": LEGACY_BASIC})
    assert response.status_code == 200 and "refresh_token" not in response.get_json(), response.get_json()
    standalone = response.get_json()["access_token"]
    coded, _ = OAuthActions(signed_in["browser"]).code_flow(client_id="web", scope="openid IdentityServerApi")
    assert "refresh_token" not in coded.get_json(), coded.get_json()  # a code's family with no refresh token
    for token in (standalone, coded.get_json()["access_token"]):
        assert client.get("/localapi/account", headers=bearer(token)).status_code == 200

    result = runner.invoke(args=["sessions", "end", "alice"])

    assert result.exit_code == 0, result.output
    assert client.get("/localapi/account", headers=bearer(standalone)).status_code == 401
    assert client.get("/localapi/account", headers=bearer(coded.get_json()["access_token"])).status_code == 401
    assert client.get("/localapi/account", headers=bearer(signed_in["bob"]["access_token"])).status_code == 200
    revoked = [e.detail for e in audit_events(app, "token_revoked") if e.detail.get("access_tokens_of_no_grant")]
    assert revoked == [{"reason": "ended_by_operator", "access_tokens_of_no_grant": True}]
