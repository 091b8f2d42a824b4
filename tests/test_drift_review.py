"""Review from outside: live grants against a configuration that moves under them. An operator
applies a new seed or uses the CLI while users hold codes, refresh tokens, access tokens,
remembered consents and browser sessions; the next request with the old grant gets no more than
the configuration now allows."""

import pytest
from sqlalchemy import update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import csrf_token
from drift_review_support import apply_seed_file, code_row, flow_client
from identity.extensions import db
from identity.models import AuthorizationCode
from test_backchannel_logout import deliver, deliveries, web_receiving_logout

WEB_REDIRECT = "https://web.example.com/cb"


@pytest.mark.database_independent
def test_a_code_issued_without_pkce_is_not_redeemed_once_a_seed_requires_pkce(client, app, flow_clients, runner,
                                                                               tmp_path):
    """docs/endpoints.md: PKCE is required for clients with `require_pkce`. A code the confidential
    client got without a code_challenge before the seed set `require_pkce` was still redeemed with
    no code_verifier: the grant got what the client's configuration no longer allows (RFC 9700
    2.1.1, PKCE against code injection), as a code carrying a scope since removed is refused."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    issued = oauth.authorize(client_id="web", scope="openid")
    code = redirect_params(issued.headers["Location"])["code"]
    apply_seed_file(runner, tmp_path, flow_client("web", require_pkce=True))
    redeemed = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=WEB_REDIRECT)
    assert redeemed.status_code == 400, f"redeemed without PKCE: {redeemed.status_code}"
    assert redeemed.get_json()["error"] == "invalid_grant", redeemed.get_json()
    assert "access_token" not in redeemed.get_json()
    assert code_row(app, "web").consumed_at is not None  # spent, as every refused redemption of a found code


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}])
def test_a_queued_logout_token_without_sid_is_not_sent_once_the_client_requires_sid(client, app, flow_clients,
                                                                                     runner):
    """docs/logout.md: `backchannel_logout_session_required` means "every token must carry the
    session's sid", and a client that requires it gets no token for a grant without one. A token
    queued without `sid` (an app revoked on the grants page, while the client did not require it)
    and still waiting when the operator set the flag was sent all the same, to an app that now
    refuses a token without `sid` (and is retried until given up, audited as a failed delivery)."""
    with web_receiving_logout(app, client) as receiver:
        page = client.get("/account/grants").get_data(as_text=True)
        client.post("/account/grants/revoke", data={"csrf_token": csrf_token(page), "client_id": "web"})
        (queued,) = deliveries(app)
        assert queued.session_id is None and queued.delivered_at is None
        result = runner.invoke(args=["clients", "update", "web", "--backchannel-logout-session-required"])
        assert result.exit_code == 0, result.output
        outcome = deliver(app)
        assert receiver.received == [], f"sent without sid: {receiver.received}"
        assert outcome == {"delivered": 0, "retry": 0, "given_up": 1}, outcome
        (settled,) = deliveries(app)
        assert settled.gave_up_at is not None and settled.delivered_at is None


@pytest.mark.database_independent
def test_a_code_older_than_a_shortened_code_lifetime_is_not_redeemed(client, app, flow_clients):
    """docs/configuration.md: AUTHORIZATION_CODE_LIFETIME_SECONDS is "how long an authorization
    code can be redeemed", and a refresh token issued before a shorter REFRESH_TOKEN_LIFETIME_SECONDS
    is refused once older than that. A code issued two minutes before the operator restarted with
    the code lifetime cut from 300 s to 60 s was still redeemed, for three more minutes, by the
    expiry stored at its issue."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    with app.app_context():  # issued two minutes ago, under the 300-second lifetime
        db.session.execute(update(AuthorizationCode).values(created_at=AuthorizationCode.created_at - 120,
                                                            expires_at=AuthorizationCode.expires_at - 120))
        db.session.commit()
    app.config["AUTHORIZATION_CODE_LIFETIME_SECONDS"] = 60  # the setting the servers now run with
    redeemed = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=WEB_REDIRECT)
    assert redeemed.status_code == 400, f"a 120-second-old code redeemed under a 60-second lifetime: {redeemed.status_code}"
    assert redeemed.get_json()["error"] == "invalid_grant", redeemed.get_json()
