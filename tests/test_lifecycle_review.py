"""Review from outside: identifiers reused. What a user, an address, a client or a scope leaves
behind when it ends, and whether a new one that takes its name inherits any of it."""

import pytest
from sqlalchemy import select

from actions import AuthActions
from identity.extensions import db
from identity.models import Client, LogoutDelivery
from test_backchannel_logout import deliver, deliveries, set_client, web_receiving_logout, web_tokens


@pytest.fixture
def app_config():
    return {"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}


def test_a_removed_clients_queued_logout_tokens_are_not_sent_to_the_client_registered_again(app, client,
                                                                                          flow_clients, runner):
    """docs/cli.md: a client registered again under a removed one's id is not sent the logout tokens
    of the sessions that signed in to the removed one. A delivery queued before the removal, and
    still waiting (the app was down), named only the id and the URI: the new registration, at the
    same URI, was sent the old client's user's `sub` and `sid`."""
    with web_receiving_logout(app, client) as receiver:
        assert AuthActions(client).logout().status_code == 200
        (queued,) = deliveries(app)
        assert queued.delivered_at is None and queued.gave_up_at is None
        assert runner.invoke(args=["clients", "remove", "web"]).exit_code == 0
        result = runner.invoke(args=["clients", "add", "web", "--grant-type", "authorization_code",
                                     "--redirect-uri", "https://web.example.com/cb", "--scope", "openid"])
        assert result.exit_code == 0, result.output
        set_client(app, "web", backchannel_logout_uri=receiver.url)  # the same app URI, registered again
        with app.app_context():
            assert db.session.scalar(select(Client.created_at).where(Client.client_id == "web")) is not None
        outcome = deliver(app)
        assert receiver.received == [], "the re-registered client was sent a logout token of the removed one"
        assert outcome["delivered"] == 0
        rows = deliveries(app)
        assert all(row.delivered_at is None for row in rows)


def _cli(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


def test_a_consent_to_a_removed_api_scope_does_not_cover_a_new_scope_of_the_same_name(app, client, flow_clients,
                                                                                     runner):
    """An API scope removed (`scopes remove`) and a new one added under its name is another API:
    the consent a user remembered for the old one must not answer the consent page for the new
    one, nor a refresh token granted for the old one reach it."""
    from actions import OAuthActions, redirect_params
    _cli(runner, "scopes", "add", "orders", "--display-name", "Read your orders")
    _cli(runner, "clients", "update", "web", "--require-consent", "--scope", "openid", "--scope", "orders")
    AuthActions(client).login()
    oauth = OAuthActions(client)
    asked = oauth.authorize(client_id="web", scope="openid orders offline_access")
    assert asked.status_code == 302 and "/consent" in asked.headers["Location"]
    answered = oauth.consent(asked.headers["Location"], remember=True)
    code = redirect_params(answered.headers["Location"])["code"]
    first = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert first.status_code == 200 and "orders" in first.get_json()["scope"].split()
    # the operator retires the API, and later adds an unrelated one under the same name
    _cli(runner, "clients", "update", "web", "--scope", "openid")
    _cli(runner, "scopes", "remove", "orders")
    _cli(runner, "scopes", "add", "orders", "--display-name", "Place orders and pay with your card")
    _cli(runner, "clients", "update", "web", "--scope", "openid", "--scope", "orders")
    with app.app_context():
        from identity.models import Consent
        assert db.session.scalar(select(Consent.scopes).where(Consent.client_id == "web")) == ["offline_access", "openid"]
    again = oauth.authorize(client_id="web", scope="openid orders")
    assert again.status_code == 302 and "/consent" in again.headers["Location"], \
        "a consent to the removed scope answered for the new scope of its name"
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=first.get_json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()  # the rest of the grant still works
    assert "orders" not in (refreshed.get_json().get("scope") or "").split(), \
        "a refresh token granted for the removed scope carried the new one"


# `clients remove` returns CLIENT_CACHE_SECONDS after its commit: the id is registered again later
@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0, "CLIENT_CACHE_SECONDS": 1}])
def test_an_id_token_of_a_removed_client_is_no_hint_for_the_client_registered_again(app, client, flow_clients, runner):
    """An access token issued before the client's registration is not its (docs/cli.md, `clients
    remove`); an ID token neither: as the hint of a sign-out it let the client registered again
    under the id sign the person out without asking, and send them to its own address."""
    from identity.models import UserSession
    AuthActions(client).login()
    old_id_token = web_tokens(client)["id_token"]
    _cli(runner, "clients", "remove", "web")
    _cli(runner, "clients", "add", "web", "--grant-type", "authorization_code", "--redirect-uri",
         "https://other.example.org/cb", "--post-logout-redirect-uri", "https://other.example.org/bye",
         "--scope", "openid")
    answer = client.get("/connect/endsession", query_string={"id_token_hint": old_id_token,
                                                             "post_logout_redirect_uri": "https://other.example.org/bye"})
    with app.app_context():
        live = db.session.scalar(select(UserSession.id).where(UserSession.revoked_at.is_(None)))
    assert live is not None, "an ID token of the removed client signed the person out unasked"
    assert answer.status_code == 400


def test_a_client_id_that_is_a_users_sub_is_refused(app, client, flow_clients, runner):
    """A client_credentials token's `sub` is its client's id (docs/endpoints.md): a client registered
    under the id that is a user's `sub` gets tokens a resource server takes for that user's
    (RFC 9700 section 4.15: client ids and user identifiers must not collide in `sub`)."""
    import json
    from identity.models import User
    from identity.services.seed import apply_seed, load_seed
    with app.app_context():
        subject = db.session.scalar(select(User.subject).where(User.username == "bob"))
    result = runner.invoke(args=["clients", "add", subject, "--grant-type", "client_credentials",
                                 "--scope", "IdentityServerApi"])
    with app.app_context():
        stored = db.session.scalar(select(Client.id).where(Client.client_id == subject))
    assert stored is None, "a client was registered under a user's sub"
    assert result.exit_code == 1 and "sub" in result.output
    seed = {"clients": [{"client_id": subject, "client_secrets": ["a-long-service-secret-0123"],
                         "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]}]}
    with app.app_context():
        from identity.errors import ValidationFailed
        with pytest.raises(ValidationFailed):
            apply_seed(load_seed(json.dumps(seed)))
        db.session.rollback()
        assert db.session.scalar(select(Client.id).where(Client.client_id == subject)) is None


@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0, "CLIENT_CACHE_SECONDS": 1}])
def test_a_session_signed_in_for_a_removed_client_is_not_shown_as_the_new_registrations(app, client, flow_clients,
                                                                                       runner):
    """The sessions page names the app a browser session signed in for. Once that client was
    removed and another registered under its id, the session was shown as signed in to the new
    app, which it never was (and the local API listed it with the new one's client_id)."""
    from urllib.parse import parse_qs, urlsplit
    from actions import OAuthActions
    from identity.models import UserSession
    asked = OAuthActions(client).authorize(client_id="web", scope="openid")
    return_url = parse_qs(urlsplit(asked.headers["Location"]).query)["returnUrl"][0]
    AuthActions(client).login(return_url=return_url)
    with app.app_context():
        assert db.session.scalar(select(UserSession.client_id)) == "web"
    assert "Web App" in client.get("/account/sessions").get_data(as_text=True)
    _cli(runner, "clients", "remove", "web")
    _cli(runner, "clients", "add", "web", "--name", "Payroll Export", "--grant-type", "client_credentials",
         "--scope", "IdentityServerApi")
    page = client.get("/account/sessions").get_data(as_text=True)
    assert "Payroll Export" not in page, "a session of the removed client was shown as the new registration's"
