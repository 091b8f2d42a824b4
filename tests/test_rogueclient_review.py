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


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1:50123/callback", "com.example.native:/cb"])
def test_a_public_native_clients_remembered_consent_is_not_reused_silently_at_another_apps_listener(
        app, client, flow_clients, redirect_uri):
    """`native` is a public app whose users are asked for consent; alice allowed it and had her
    decision remembered. Another app on her device (a rogue client's) can listen on any loopback
    port, or claim the private-use scheme `native` registered: with `native`'s public client_id,
    prompt=none and a PKCE pair of its own it would get `native`'s code, and so `native`'s grant,
    without alice seeing anything (RFC 8252 section 8.6, RFC 6749 section 10.2: no automatic
    answer on previously granted consent when the client's identity cannot be assured)."""
    set_client(app, "native", require_consent=True)
    AuthActions(client).login()
    oauth = OAuthActions(client)
    # remembered through the loopback URI exactly as registered (which may remember it)
    asked = oauth.authorize(client_id="native", scope="openid IdentityServerApi", redirect_uri="http://127.0.0.1/callback",
                            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM", code_challenge_method="S256")
    assert "/consent" in asked.headers["Location"]
    answered = oauth.consent(asked.headers["Location"], decision="allow", remember=True)
    assert "code" in redirect_params(answered.headers["Location"])

    from actions import pkce_pair
    verifier, challenge = pkce_pair()
    silent = oauth.authorize(client_id="native", scope="openid IdentityServerApi", redirect_uri=redirect_uri,
                             prompt="none", code_challenge=challenge, code_challenge_method="S256")
    params = redirect_params(silent.headers["Location"])
    assert "code" not in params, f"another app's listener got native's code silently: {silent.headers['Location'][:80]}"
    assert params["error"] == "consent_required"
    # asked, the person sees the page, which offers no "remember" that such a request could not use
    page = oauth.authorize(client_id="native", scope="openid IdentityServerApi", redirect_uri=redirect_uri,
                           code_challenge=challenge, code_challenge_method="S256")
    assert "/consent" in page.headers["Location"]
    html = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "Native App" in html and 'name="remember"' not in html


@pytest.mark.parametrize("response_type", ["code token", "code id_token"])
def test_a_confidential_clients_front_channel_tokens_are_not_sent_silently_to_a_scheme_any_app_may_claim(
        app, client, seeded, response_type):
    """`mobile` is confidential, but its hybrid answers carry an access token (or an ID token) in
    the front channel, to its private-use scheme: no secret is needed to use what arrives there.
    With consent remembered for it, another app on the device that claims `com.example.app`
    would get mobile's access token (IdentityServerApi included) or alice's ID token for mobile
    from a prompt=none request, alice seeing nothing (RFC 8252 section 8.6)."""
    from identity.services import consent
    from identity.models import User
    set_client(app, "mobile", require_consent=True)
    scope = "openid IdentityServerApi"
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        consent.remember_consent(alice.id, "mobile", scope.split())
    AuthActions(client).login()
    silent = OAuthActions(client).authorize(client_id="mobile", scope=scope, response_type=response_type,
                                            prompt="none", nonce="n-0123456789",
                                            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM",
                                            code_challenge_method="S256")
    location = silent.headers["Location"]
    assert location.startswith("com.example.app:/callback#")
    params = redirect_params(location)
    assert "access_token" not in params and "id_token" not in params, \
        f"a claimed scheme got mobile's front-channel tokens silently: {sorted(params)}"
    assert params["error"] == "consent_required", params
