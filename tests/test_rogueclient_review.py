"""Review from the side of one registered client turned hostile, on a server shared with other
clients: with only what that client holds (its secret, its redirect and logout URIs, the tokens
issued to it), it must not reach, slow or lock out what belongs to other clients and their users."""

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD, FLOW_SECRETS
from identity.extensions import db
from identity.models import Client, LogoutDelivery
from rp_receiver import RelyingParty

ISSUER = "https://localhost"  # the test client's host: the issuer when none is configured


def set_client(app, client_id, **values):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(**values))
        db.session.commit()


def deliveries(app) -> list[LogoutDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)))
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0, "BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS": 1}])
def test_a_client_whose_logout_endpoint_hangs_does_not_hold_back_other_clients_logouts(app, client, flow_clients):
    """`legacy` (password grant) registers a back-channel logout URI that never answers in time,
    then queues logout tokens to itself by revoking refresh tokens it holds (as many as it likes).
    A sign-out of alice at `web`, queued after them, must not wait behind every one of them: each
    costs a sender the whole timeout, and a sender takes them one at a time."""
    jwks = client.get("/.well-known/openid-configuration/jwks").get_json()
    rogue = RelyingParty(jwks=jwks, issuer=ISSUER, client_id="legacy").start()
    web = RelyingParty(jwks=jwks, issuer=ISSUER, client_id="web").start()
    try:
        rogue.delay = 3  # past the 1 s timeout, on every attempt
        set_client(app, "legacy", backchannel_logout_uri=rogue.url)
        set_client(app, "web", backchannel_logout_uri=web.url)
        oauth = OAuthActions(client)
        for _ in range(3):
            refresh = oauth.token("legacy", grant_type="password", username="bob", password=BOB_PASSWORD,
                                  scope="openid offline_access").get_json()["refresh_token"]
            assert client.post("/connect/revocation", data={"token": refresh, "client_id": "legacy",
                                                            "client_secret": FLOW_SECRETS["legacy"]}).status_code == 200
        AuthActions(client).login()
        code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
        assert oauth.token("web", grant_type="authorization_code", code=code,
                           redirect_uri="https://web.example.com/cb").status_code == 200
        assert AuthActions(client).logout().status_code == 200
        assert [row.client_id for row in deliveries(app)] == ["legacy"] * 3 + ["web"]

        from identity.services.logout_delivery import deliver_due
        with app.app_context():
            try:
                deliver_due(limit=2)  # one sender's first two attempts
            finally:
                db.session.remove()
        web_row = deliveries(app)[-1]
        assert web_row.delivered_at is not None, \
            f"web's logout token waits behind the rogue client's: {len(rogue.received)} attempts to it, {len(web.received)} to web"
        assert len(web.tokens) == 1 and web.errors == []
    finally:
        rogue.stop()
        web.stop()
