"""One account change made through each of its ways (the account pages, the local API, a mailed
link, the operator's CLI, the protocol) must have the same effect, and what is read back
afterwards must agree across channels."""

from sqlalchemy import select, update

from actions import AuthActions, OAuthActions
from mfa_actions import step_clock  # noqa: F401  (the fixture)
from identity.extensions import db
from identity.models import Client, User


def _set(app, model, where, **values) -> None:
    with app.app_context():
        db.session.execute(update(model).where(where).values(**values))
        db.session.commit()


def _require_verified_email(app, client_id: str) -> None:
    _set(app, Client, Client.client_id == client_id, require_verified_email=True)


# --- a client that requires a verified address: every way to its tokens applies the rule ----------


def test_a_refresh_token_issues_nothing_to_a_client_that_requires_a_verified_address(client, app, flow_clients):
    """The authorization endpoint and the password grant refuse a client with
    require_verified_email a user whose address is not verified (docs/email.md: it "gets no code or
    token"); a refresh token granted before the operator set it (`clients update
    --require-verified-email`), or before a seed changed the address, must not issue either."""
    _set(app, User, User.username == "alice", email_verified=False)
    AuthActions(client).login()
    oauth = OAuthActions(client)
    body = oauth.code_flow(client_id="web", scope="openid email offline_access")[0].get_json()
    _require_verified_email(app, "web")
    # introspection answers as the refresh grant would (RFC 7662): inactive
    introspected = client.post("/connect/introspect", data={"token": body["refresh_token"]},
                               auth=("web", "web-secret-0123456789")).get_json()
    assert introspected == {"active": False}, introspected
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 400, refreshed.get_json()
    assert refreshed.get_json()["error"] == "invalid_grant"
    # the password grant of the same client, for the same user: refused for the same reason
    _require_verified_email(app, "legacy")
    password = oauth.token("legacy", grant_type="password", username="alice",
                           password="tulip-quartz-harbor-917", scope="openid")
    assert password.get_json()["error"] == "invalid_grant"
    assert "verified email" in password.get_json()["error_description"]
    assert "verified email" in refreshed.get_json()["error_description"]


def test_a_verified_address_still_refreshes_and_redeems_for_a_client_that_requires_one(client, app, flow_clients):
    _set(app, User, User.username == "alice", email_verified=True)
    _require_verified_email(app, "web")
    AuthActions(client).login()
    oauth = OAuthActions(client)
    token, _ = oauth.code_flow(client_id="web", scope="openid email offline_access")
    assert token.status_code == 200, token.get_json()
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=token.get_json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    introspected = client.post("/connect/introspect", data={"token": refreshed.get_json()["refresh_token"]},
                               auth=("web", "web-secret-0123456789")).get_json()
    assert introspected["active"] is True


def test_a_code_is_not_redeemed_for_an_unverified_address_once_the_client_requires_one(client, app, flow_clients):
    _set(app, User, User.username == "alice", email_verified=False)
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code, verifier = oauth.code_with_pkce("native")
    _require_verified_email(app, "native")
    redeemed = oauth.redeem("native", code, verifier)
    assert redeemed.status_code == 400 and redeemed.get_json()["error"] == "invalid_grant", redeemed.get_json()


# --- what GET /localapi/account reads back after a change, whichever way it was made ---------------


def _account(client, token: str) -> dict:
    response = client.get("/localapi/account", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _remembered(client, token: str) -> dict:
    """Use a token twice: the second use takes a lease and the worker remembers the answer
    (services/bearer_cache.py), as an app polling its settings screen does."""
    _account(client, token)
    return _account(client, token)


def test_the_account_reports_mfa_enabled_as_it_is_once_the_operator_reset_the_factors(client, app, seeded, runner,
                                                                                       step_clock):
    """A password set or an address change asked for waits out the workers' remembered answers,
    so the next GET /localapi/account reports it; removing the second factors (`users mfa-reset`,
    or the page) changed what the account reads back (`mfa_enabled`) without waiting."""
    from mfa_actions import enrol_user
    from test_localapi_support import LocalApi

    enrol_user(app)
    token = LocalApi(app, client).token()
    assert _remembered(client, token)["mfa_enabled"] is True
    result = runner.invoke(args=["users", "mfa-reset", "alice"])
    assert result.exit_code == 0, result.output
    assert _account(client, token)["mfa_enabled"] is False


def test_the_account_reports_mfa_enabled_as_it_is_once_the_page_removed_the_app(client, app, seeded, step_clock):
    from mfa_actions import code_at, enrol_user, post_mfa, sign_in_with_code
    from test_localapi_support import LocalApi

    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    token = LocalApi(app, client).token()
    assert _remembered(client, token)["mfa_enabled"] is True
    removed = post_mfa(client, "remove", password="tulip-quartz-harbor-917", code=code_at(secret))
    assert removed.status_code == 200, removed.get_data(as_text=True)
    assert _account(client, token)["mfa_enabled"] is False


# --- a link for an address that awaits one: every page that offers links offers it -----------------


def test_the_verified_address_page_offers_the_link_to_an_address_asked_for(client, app, seeded, mail):
    """An account with no address yet asks for one (the page or PUT /localapi/email): it waits in
    pending_email, and /account/email and POST /localapi/email/verification send its link again.
    The page a client that requires a verified address sends people to told them they had no
    address and to add one, and offered no link."""
    from conftest import csrf_token

    _set(app, User, User.username == "alice", email=None, email_normalized=None, email_verified=False,
         pending_email="alice.new@example.org")
    AuthActions(client).login()
    page = client.get("/account/email/required")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="send-link"' in html, "no link offered: Your account has no email address" * ("no email address" in html)
    assert "alice.new@example.org" in html and "no email address" not in html
    sent = client.post("/account/email/required", data={"csrf_token": csrf_token(html)})
    assert sent.status_code == 200 and "We sent a link to alice.new@example.org" in sent.get_data(as_text=True)
    assert mail.wait_for(to="alice.new@example.org")


def test_the_account_reports_the_address_a_seed_gave_as_it_is(client, app, seeded, runner, tmp_path):
    """A seed that changes a user's address (which makes it unverified) or vouches for it changed
    what the local API and UserInfo read back without waiting out the workers' remembered
    answers, as a seed that changes a password waits them out."""
    import json

    from test_localapi_support import LocalApi

    _set(app, User, User.username == "alice", email_verified=True)
    token = LocalApi(app, client).token()
    assert _remembered(client, token)["email"] == "alice@example.com"
    alice = next(u for u in seeded["users"] if u["username"] == "alice")
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"users": [{**alice, "email": "alice@example.net"}]}))
    result = runner.invoke(args=["seed", str(seed_file)])
    assert result.exit_code == 0, result.output
    account = _account(client, token)
    assert (account["email"], account["email_verified"]) == ("alice@example.net", False), account


def test_the_account_reports_no_pending_address_once_its_link_found_it_taken(client, app, flow_clients, mail):
    """A followed link applies the address and waits out the remembered answers, so the next
    GET /localapi/account reports it; a link whose address another account took meanwhile ends the
    pending change instead, and the account kept reporting it as pending."""
    from test_localapi_support import LocalApi

    token = LocalApi(app, client).token()
    headers = {"Authorization": f"Bearer {token}"}
    asked = client.put("/localapi/email", json={"email": "shared@example.org",
                                                "current_password": "tulip-quartz-harbor-917"}, headers=headers)
    assert asked.status_code == 202, asked.get_data(as_text=True)
    link = mail.link(mail.wait_for(to="shared@example.org"))
    _set(app, User, User.username == "bob", email="shared@example.org", email_normalized="shared@example.org")
    assert _remembered(client, token)["pending_email"] == "shared@example.org"
    followed = client.get(link.removeprefix("https://localhost"))
    assert followed.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User.pending_email).where(User.username == "alice")) is None
    assert _account(client, token)["pending_email"] is None
