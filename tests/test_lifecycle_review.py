"""Review from outside: identifiers reused. What a user, an address, a client or a scope leaves
behind when it ends, and whether a new one that takes its name inherits any of it."""

import pytest
from sqlalchemy import select

from actions import AuthActions
from identity.extensions import db
from identity.models import Client, LogoutDelivery
from rp_receiver import RelyingParty
from test_backchannel_logout import ISSUER, deliver, deliveries, set_client, web_tokens


@pytest.fixture
def app_config():
    return {"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}


def test_a_removed_clients_queued_logout_tokens_are_not_sent_to_the_client_registered_again(app, client,
                                                                                          flow_clients, runner):
    """docs/cli.md: a client registered again under a removed one's id is not sent the logout tokens
    of the sessions that signed in to the removed one. A delivery queued before the removal, and
    still waiting (the app was down), named only the id and the URI: the new registration, at the
    same URI, was sent the old client's user's `sub` and `sid`."""
    receiver = RelyingParty(jwks=client.get("/.well-known/openid-configuration/jwks").get_json(),
                            issuer=ISSUER, client_id="web").start()
    try:
        set_client(app, "web", backchannel_logout_uri=receiver.url)
        AuthActions(client).login()
        web_tokens(client)
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
    finally:
        receiver.stop()
