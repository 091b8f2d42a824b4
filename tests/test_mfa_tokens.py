"""What a second factor changes in the protocol: amr, acr and auth_time in ID and access tokens,
acr_values=mfa and a client's require_mfa, prompt=login and max_age, the password grant, and the
operator's `users mfa-reset`."""

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD
from identity.extensions import db
from identity.models import AuditEvent, Client, RecoveryCode, TotpFactor
from mfa_actions import CLOCK, claims, code_at, enrol_user, password_step, second_step, sign_in_with_code, step_clock  # noqa: F401

SCOPE = "openid profile offline_access IdentityServerApi"


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def return_url_of(response) -> str:
    return parse_qs(urlsplit(response.headers["Location"]).query)["returnUrl"][0]


def test_tokens_of_a_sign_in_with_two_factors_say_so(client, app, flow_clients):
    secret, _ = enrol_user(app)
    before = int(time.time())
    assert sign_in_with_code(client, secret).status_code == 302
    oauth = OAuthActions(client)
    token, _ = oauth.code_flow(client_id="web", scope=SCOPE, nonce="n-1")
    body = token.get_json()
    id_claims, access_claims = claims(body["id_token"]), claims(body["access_token"])
    for found in (id_claims, access_claims):
        assert found["amr"] == ["pwd", "otp", "mfa"]
        assert found["acr"] == "mfa"
        assert before - 1 <= found["auth_time"] <= int(time.time()) + 1
    # a refresh keeps how the user signed in
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=body["refresh_token"]).get_json()
    assert claims(refreshed["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert claims(refreshed["access_token"])["auth_time"] == access_claims["auth_time"]
    # introspection tells a resource server the same
    import base64
    basic = base64.b64encode(b"web:" + OAuthActions.SECRETS["web"].encode()).decode()
    introspected = client.post("/connect/introspect", data={"token": refreshed["access_token"]},
                               headers={"Authorization": "Basic " + basic}).get_json()
    assert introspected["active"] is True
    assert (introspected["amr"], introspected["acr"]) == (["pwd", "otp", "mfa"], "mfa")


def test_tokens_of_a_password_sign_in_say_pwd(client, app, flow_clients):
    assert AuthActions(client).login().status_code == 302
    token, _ = OAuthActions(client).code_flow(client_id="native", scope=SCOPE)
    body = token.get_json()
    for jwt in (body["id_token"], body["access_token"]):
        assert claims(jwt)["amr"] == ["pwd"]
        assert claims(jwt)["acr"] == "1fa"


def test_the_hybrid_front_channel_tokens_carry_the_methods(client, app, flow_clients, seeded):
    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    verifier, challenge = pkce_pair()
    response = OAuthActions(client).authorize(client_id="mobile", response_type="code id_token token",
                                              scope="openid profile IdentityServerApi", nonce="n-2",
                                              code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302, response.get_data(as_text=True)
    params = redirect_params(response.headers["Location"])
    for jwt in (params["id_token"], params["access_token"]):
        assert claims(jwt)["amr"] == ["pwd", "otp", "mfa"] and claims(jwt)["acr"] == "mfa"


def test_acr_values_mfa_sends_a_user_without_a_factor_to_set_one_up(client, app, flow_clients):
    AuthActions(client).login()
    response = OAuthActions(client).authorize(client_id="native", acr_values="mfa", code_challenge="x" * 43,
                                              code_challenge_method="S256")
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "Two-step sign-in required" in html and "Native App" in html
    assert 'href="/account/mfa?returnUrl=/connect/authorize?client_id%3Dnative%26' in html  # the request goes along


@pytest.mark.parametrize("acr_values", ["1fa mfa", "mfa 1fa", "1 2"])
def test_acr_values_that_accept_one_factor_are_answered_for_a_password_sign_in(client, app, flow_clients, acr_values):
    """OpenID Connect Core 3.1.2.1: acr_values lists the acceptable classes in order of preference,
    and 15.1: its use must not result in an error. The conformance suite sends the advertised
    acr_values_supported, "1fa mfa": a password sign-in meets 1fa, and the ID token says so."""
    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="web", scope="openid", nonce="n-acr", acr_values=acr_values)
    assert token.status_code == 200
    assert claims(token.get_json()["id_token"])["acr"] == "1fa"


def test_acr_values_mfa_with_prompt_none_is_interaction_required(client, app, flow_clients):
    AuthActions(client).login()
    response = OAuthActions(client).authorize(client_id="native", acr_values="mfa", prompt="none",
                                              code_challenge="x" * 43, code_challenge_method="S256")
    assert response.status_code == 302
    assert redirect_params(response.headers["Location"])["error"] == "interaction_required"


def test_acr_values_mfa_asks_a_password_session_to_sign_in_again_with_both_factors(client, app, flow_clients):
    AuthActions(client).login()  # the password alone, before the factor was set up
    secret, _ = enrol_user(app)
    response = OAuthActions(client).authorize(client_id="native", acr_values="mfa", code_challenge="x" * 43,
                                              code_challenge_method="S256")
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login")
    done = sign_in_with_code(client, secret, return_url=return_url_of(response))
    assert done.status_code == 303
    params = redirect_params(done.headers["Location"])
    assert "code" in params


def test_the_consent_page_is_no_way_around_a_required_second_factor(client, app, flow_clients, seeded):
    AuthActions(client).login()
    enrol_user(app)
    params = OAuthActions(client).authorize_params(client_id="spa", acr_values="mfa", code_challenge="x" * 43,
                                                   code_challenge_method="S256")
    from urllib.parse import urlencode
    response = client.get("/consent?" + urlencode(params))
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login")


def test_a_client_that_requires_mfa(client, app, flow_clients):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "native").values(require_mfa=True))
        db.session.commit()
    AuthActions(client).login()
    assert OAuthActions(client).authorize(client_id="native", code_challenge="x" * 43,
                                          code_challenge_method="S256").status_code == 403
    secret, _ = enrol_user(app)
    again = OAuthActions(client).authorize(client_id="native", code_challenge="x" * 43, code_challenge_method="S256")
    assert again.status_code == 302 and again.headers["Location"].startswith("/account/login")
    sign_in_with_code(client, secret)
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid")
    assert claims(token.get_json()["id_token"])["acr"] == "mfa"


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}])
def test_prompt_login_and_max_age_ask_for_both_factors_again(client, app, flow_clients, extra):
    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    time.sleep(1.1)  # max_age=0: a sign-in a second old is too old
    response = OAuthActions(client).authorize(client_id="native", code_challenge="x" * 43,
                                              code_challenge_method="S256", **extra)
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login")
    return_url = return_url_of(response)
    first = password_step(client, return_url=return_url)
    assert "/account/login/mfa" in first.headers["Location"]  # the password alone is not enough
    done = second_step(client, code_at(secret), return_url=return_url)
    assert done.status_code == 303 and "code" in redirect_params(done.headers["Location"])


def test_the_password_grant_refuses_a_user_with_a_second_factor(client, app, flow_clients):
    oauth = OAuthActions(client)
    ok = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD, scope="openid")
    assert ok.status_code == 200
    assert claims(ok.get_json()["access_token"])["amr"] == ["pwd"]
    enrol_user(app)
    refused = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD, scope="openid")
    assert refused.status_code == 400
    body = refused.get_json()
    assert body["error"] == "invalid_grant" and "second factor" in body["error_description"]
    wrong = oauth.token("legacy", grant_type="password", username="alice", password="wrong-password-0", scope="openid")
    assert "second factor" not in wrong.get_json()["error_description"]  # told only after the right password


def test_discovery_names_the_acr_values_and_claims(client, seeded):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["acr_values_supported"] == ["1fa", "mfa"]
    assert {"amr", "acr", "auth_time"} <= set(doc["claims_supported"])


def test_users_mfa_reset_removes_the_factors_and_is_audited(app, runner, seeded, mail):
    enrol_user(app)
    result = runner.invoke(args=["users", "mfa-reset", "alice"])
    assert result.exit_code == 0, result.output
    assert "Removed the second factors of alice" in result.output
    notice = mail.wait_for(to="alice@example.com")  # the user is told, with no link in it
    assert "second factors" in mail.text(notice) and "alice" in mail.text(notice)
    assert mail.links(notice) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TotpFactor)) == 0
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "mfa_reset"))
        assert event.detail["had_factor"] is True and event.detail["by"] == "operator"
    assert runner.invoke(args=["users", "mfa-reset", "nobody"]).exit_code == 1


def test_users_mfa_reset_with_nothing_to_remove_records_nothing(app, runner, seeded):
    """docs/cli.md: a command that finds nothing to change says so, writes nothing and records no
    audit event. `users mfa-reset` of a user without a second factor recorded `mfa_reset`."""
    result = runner.invoke(args=["users", "mfa-reset", "alice"])
    assert result.exit_code == 0 and "alice had no second factor" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "mfa_reset")) == 0


def test_users_mfa_reset_takes_json_as_the_other_user_commands_do(app, runner, seeded):
    """docs/cli.md lists it with the users commands, which all take --json for scripts."""
    result = runner.invoke(args=["users", "mfa-reset", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"username": "alice", "removed": False}
    enrol_user(app)
    result = runner.invoke(args=["users", "mfa-reset", "alice", "--json"])
    assert json.loads(result.output) == {"username": "alice", "removed": True}


def test_clients_add_require_mfa(app, runner, seeded):
    result = runner.invoke(args=["clients", "add", "strict", "--grant-type", "authorization_code", "--public",
                                 "--redirect-uri", "https://strict.example/cb", "--scope", "openid", "--require-mfa"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(select(Client.require_mfa).where(Client.client_id == "strict")) is True
