"""Audit and metrics review: each security event leaves exactly the audit rows and metric counts
the docs name, for what committed, with the right user, client and address."""

from sqlalchemy import select

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.services import metrics
from mfa_actions import step_clock  # noqa: F401  (a fixture: the TOTP clock of enrol_user)


def _issued(grant_type: str, client_id: str) -> float:
    return metrics.REGISTRY.get_sample_value("identity_tokens_issued_total",
                                             {"grant_type": grant_type, "client_id": client_id}) or 0.0


# --- tokens issued ------------------------------------------------------------------------------

def test_a_code_redemption_refused_at_its_write_counts_no_token(app, client, flow_clients, database_uri,
                                                                 monkeypatch):
    """A code whose user changed password while it was redeemed is invalid_grant: no token was
    issued, so identity_tokens_issued_total does not count one."""
    from races import codes_ended_by_another_worker_during_redemption

    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    ended = codes_ended_by_another_worker_during_redemption(monkeypatch, database_uri)
    before = _issued("authorization_code", "web")
    late = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert ended and late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    assert _issued("authorization_code", "web") == before


def test_a_rotation_refused_at_its_write_counts_no_token(app, client, flow_clients, database_uri, monkeypatch):
    """A refresh whose grant was revoked while it was checked is invalid_grant: no token counted."""
    from identity.models import User
    from identity.services import issued_grants
    from races import other_workers

    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    original, done = issued_grants.user_of_grant, []

    def revoked_meanwhile(*args, **kwargs):
        if not done:
            done.append(True)
            with other_workers(database_uri) as (worker,), worker.app_context():
                alice = db.session.scalar(select(User.id).where(User.username == "alice"))
                issued_grants.revoke_user_client_grants(alice, "web")
                db.session.commit()
        return original(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "user_of_grant", revoked_meanwhile)
    before = _issued("refresh_token", "web")
    late = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert done and late.status_code == 400 and late.get_json()["error"] == "invalid_grant"
    assert _issued("refresh_token", "web") == before


def test_each_token_kept_is_counted_once(app, client, flow_clients):
    """The code, its refresh, the implicit flow's front channel: one count each."""
    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    before = {g: _issued(g, c) for g, c in (("authorization_code", "web"), ("refresh_token", "web"),
                                              ("implicit", "implicit"))}
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code,
                         redirect_uri="https://web.example.com/cb").get_json()
    assert oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200
    implicit = oauth.authorize(client_id="implicit", response_type="id_token token", scope="openid profile", nonce="n")
    assert "access_token" in redirect_params(implicit.headers["Location"])
    assert {g: _issued(g, c) for g, c in (("authorization_code", "web"), ("refresh_token", "web"),
                                          ("implicit", "implicit"))} == {g: n + 1 for g, n in before.items()}


# --- revocation ---------------------------------------------------------------------------------

def _revoke(client, token: str, hint: str):
    from test_audit import MOBILE_BASIC

    return client.post("/connect/revocation", data={"token": token, "token_type_hint": hint}, headers=MOBILE_BASIC)


def test_an_access_token_revoked_names_its_user_and_is_recorded_once(app, client, seeded):
    """RFC 7009 lets a client send a revocation again (it answers 200 for a revoked token): the
    second revokes nothing and records nothing; the one that did names the token's user."""
    from test_audit import alice_id, events, mobile_tokens

    assert AuthActions(client).login().status_code == 302
    tokens = mobile_tokens(client)
    assert _revoke(client, tokens["access_token"], "access_token").status_code == 200
    assert _revoke(client, tokens["access_token"], "access_token").status_code == 200
    revoked = [(e.user_id, e.client_id, e.detail.get("token_type")) for e in events(app, "token_revoked")]
    assert revoked == [(alice_id(app), "mobile", "access_token")]


def test_a_refresh_token_revoked_again_records_nothing_more(app, client, seeded):
    from test_audit import alice_id, events, mobile_tokens

    assert AuthActions(client).login().status_code == 302
    tokens = mobile_tokens(client)
    assert _revoke(client, tokens["refresh_token"], "refresh_token").status_code == 200
    assert _revoke(client, tokens["refresh_token"], "refresh_token").status_code == 200
    revoked = [(e.user_id, e.client_id, e.detail["reason"]) for e in events(app, "token_revoked")]
    assert revoked == [(alice_id(app), "mobile", "revocation_endpoint")]


# --- the operator's user commands ---------------------------------------------------------------

def test_a_user_added_and_removed_is_named_by_its_row_id(app, runner):
    """The audit log names users by row id (docs/cli.md): the events of a user's creation and
    removal carry it, so they join that user's other events, and a later user of the same name
    is not taken for them."""
    from test_audit import events
    from test_cli import GOOD_PASSWORD
    from identity.models import User

    assert runner.invoke(args=["users", "add", "carol"], input=GOOD_PASSWORD + "\n").exit_code == 0
    with app.app_context():
        carol = db.session.scalar(select(User.id).where(User.username == "carol"))
    assert runner.invoke(args=["users", "remove", "carol"]).exit_code == 0
    assert [(e.event, e.user_id) for e in events(app) if e.event in ("user_created", "user_removed")] == [
        ("user_created", carol), ("user_removed", carol)]


# --- the password grant -------------------------------------------------------------------------

def test_a_password_grant_refused_for_its_scope_records_no_sign_in(app, client, flow_clients):
    """A scope the client may not have is invalid_scope, and no token is issued: the request is
    no sign-in, in the audit log or in identity_sign_ins_total."""
    from conftest import ALICE_PASSWORD
    from test_audit import events

    before = metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0
    refused = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                         scope="openid not-a-scope-of-legacy")
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_scope"
    assert [e.event for e in events(app) if e.event.startswith("sign_in")] == []
    assert (metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0) == before


def test_a_password_grant_refused_for_an_unverified_address_records_no_sign_in(app, client, flow_clients):
    """A client that requires a verified address refuses bob's right password (invalid_grant):
    the password was accepted, but nobody signed in, in the log or in the success count."""
    from identity.models import Client
    from test_audit import events

    with app.app_context():
        db.session.scalar(select(Client).where(Client.client_id == "legacy")).require_verified_email = True
        db.session.commit()
    before = metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0
    refused = OAuthActions(client).token("legacy", grant_type="password", username="bob",
                                         password="marble-violet-canyon-482", scope="openid")
    assert refused.status_code == 400 and "verified" in refused.get_json()["error_description"]
    assert [e.event for e in events(app) if e.event.startswith("sign_in")] == ["sign_in_password_accepted"]
    assert (metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0) == before


# --- attempts while locked ----------------------------------------------------------------------

def _locked_alice(app) -> int:
    from identity.clock import now
    from identity.models import User

    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        alice.locked_until = now() + 600
        db.session.commit()
        return alice.id


def test_a_password_change_refused_while_locked_is_audited(app, seeded):
    """A current password tried while the account is locked is audited, as at sign-in
    (sign_in_failed, reason locked) and at a factor's removal (mfa_failed, reason locked)."""
    from conftest import ALICE_PASSWORD
    from identity.errors import AccountLocked
    from identity.services import accounts
    from test_audit import events

    alice = _locked_alice(app)
    with app.app_context():
        try:
            accounts.change_password(alice, ALICE_PASSWORD, "violet-anchor-meadow-482", "violet-anchor-meadow-482",
                                     client_id="web")
        except AccountLocked:
            pass
        else:
            raise AssertionError("changed while locked")
    assert [(e.user_id, e.client_id, e.detail) for e in events(app, "password_change_failed")] == [
        (alice, "web", {"reason": "locked"})]


def test_an_address_change_refused_while_locked_is_audited(app, seeded):
    from conftest import ALICE_PASSWORD
    from identity.errors import AccountLocked
    from identity.services import verification
    from test_audit import events

    alice = _locked_alice(app)
    with app.test_request_context(), app.app_context():
        try:
            verification.request_email_change(alice, "alice.new@example.com", ALICE_PASSWORD, client_id="web")
        except AccountLocked:
            pass
        else:
            raise AssertionError("asked while locked")
    assert [(e.user_id, e.client_id, e.detail) for e in events(app, "email_change_failed")] == [
        (alice, "web", {"reason": "locked"})]


# --- the second step ----------------------------------------------------------------------------

def test_a_sign_in_finished_by_its_second_step_is_a_successful_sign_in(app, client, seeded, step_clock):
    """identity_sign_ins_total counts a right password with a second factor to come as nothing
    yet, "as the second step decides" (docs/metrics.md): a finished second step is the success."""
    from mfa_actions import enrol_user, sign_in_with_code
    from test_audit import events

    secret, _ = enrol_user(app)
    before = metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0
    response = sign_in_with_code(client, secret)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert [e.event for e in events(app) if e.event.startswith("sign_in")] == ["sign_in_password_accepted", "sign_in"]
    assert (metrics.REGISTRY.get_sample_value("identity_sign_ins_total", {"result": "success"}) or 0.0) == before + 1
