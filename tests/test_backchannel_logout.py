"""Back-channel logout: which clients are told, the logout token a real RP endpoint validates,
and durable delivery through the queue (RP down then up, slow, answering 500; a URI changed
after the logout was queued; claims racing)."""

import threading
import time
from contextlib import contextmanager

import jwt
import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import FLOW_CLIENTS
from identity.extensions import db
from identity.models import AuditEvent, Client, LogoutDelivery
from rp_receiver import RelyingParty

ISSUER = "https://localhost"  # the test client's host: the issuer when none is configured


@pytest.fixture
def app_config():
    # no deliverer thread: the tests send what is due themselves, pass by pass
    return {"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}


@pytest.fixture
def rp(app, client, flow_clients):
    """The `web` client's back-channel logout endpoint, registered for it."""
    receiver = RelyingParty(jwks=client.get("/.well-known/openid-configuration/jwks").get_json(),
                            issuer=ISSUER, client_id="web").start()
    set_client(app, "web", backchannel_logout_uri=receiver.url)
    yield receiver
    receiver.stop()


def set_client(app, client_id, **values):
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(**values))
        db.session.commit()


def web_tokens(client, scope="openid profile offline_access") -> dict:
    """Signed in already: a code for `web` in this browser session, redeemed."""
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope=scope).headers["Location"])["code"]
    return oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").get_json()


@contextmanager
def web_receiving_logout(app, client):
    """alice signed in at `web` (its tokens redeemed), whose back-channel logout URI is a real RP
    endpoint on loopback: the receiver, stopped afterwards."""
    receiver = RelyingParty(jwks=client.get("/.well-known/openid-configuration/jwks").get_json(),
                            issuer=ISSUER, client_id="web").start()
    try:
        set_client(app, "web", backchannel_logout_uri=receiver.url)
        AuthActions(client).login()
        web_tokens(client)
        yield receiver
    finally:
        receiver.stop()


def deliver(app) -> dict:
    from identity.services.logout_delivery import deliver_due
    with app.app_context():
        try:
            return deliver_due()
        finally:
            db.session.remove()


def deliveries(app) -> list[LogoutDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)))
        db.session.expunge_all()
        return rows


def make_due_now(app):
    with app.app_context():
        db.session.execute(update(LogoutDelivery).values(next_attempt_at=0))
        db.session.commit()


def test_sign_out_sends_the_session_a_valid_logout_token(app, client, rp):
    AuthActions(client).login()
    id_token = jwt.decode(web_tokens(client)["id_token"], options={"verify_signature": False})
    assert AuthActions(client).logout().status_code == 200
    assert rp.received == []  # queued, not sent during the request
    assert deliver(app) == {"delivered": 1, "retry": 0, "given_up": 0}
    assert rp.errors == []
    (claims,) = rp.tokens
    assert claims["sub"] == id_token["sub"] and claims["sid"] == id_token["sid"]
    assert claims["aud"] == "web" and claims["iss"] == ISSUER
    assert rp.received[0]["content_type"] == "application/x-www-form-urlencoded"
    (row,) = deliveries(app)
    assert row.delivered_at is not None and row.attempts == 1 and row.reason == "signed_out"
    assert deliver(app) == {"delivered": 0, "retry": 0, "given_up": 0}  # once
    assert len(rp.received) == 1


def test_only_clients_of_the_session_are_told(app, client, rp):
    AuthActions(client).login()
    AuthActions(client).logout()  # a session that issued nothing to `web`
    assert deliveries(app) == []
    assert deliver(app)["delivered"] == 0 and rp.received == []


def test_a_client_without_a_backchannel_uri_gets_nothing(app, client, rp):
    set_client(app, "web", backchannel_logout_uri=None)
    AuthActions(client).login()
    web_tokens(client)
    AuthActions(client).logout()
    assert deliveries(app) == []


def test_password_set_tells_every_session_and_grant_once(app, client, rp, runner):
    AuthActions(client).login()
    first = web_tokens(client)
    web_tokens(client)  # a second family in the same session: one token for the session, not three
    result = runner.invoke(args=["users", "set-password", "alice"], input="an-entirely-new-passphrase-42\n" * 2)
    assert result.exit_code == 0, result.output
    (row,) = deliveries(app)
    assert row.reason == "password_changed" and row.issuer is None  # no request: the configured ISSUER at send time
    app.config["ISSUER"] = ISSUER
    assert deliver(app)["delivered"] == 1
    (claims,) = rp.tokens
    assert claims["sid"] == jwt.decode(first["id_token"], options={"verify_signature": False})["sid"]


def test_disabling_the_user_queues_its_tokens_as_a_disable(app, client, rp, runner):
    """The queue says why each token was sent: a disable is not a password change."""
    AuthActions(client).login()
    web_tokens(client)
    result = runner.invoke(args=["users", "disable", "alice"])
    assert result.exit_code == 0, result.output
    (row,) = deliveries(app)
    assert row.reason == "user_disabled" and row.client_id == "web"


def test_removing_the_user_tells_every_session_and_grant(app, client, rp, runner):
    """docs/logout.md: when a user's session or grant ends here, the apps signed in through it
    are told. `users disable` told them; `users remove`, which ends every session and grant of the
    user (a leaver's account), told no one, and the apps kept them signed in."""
    AuthActions(client).login()
    first = web_tokens(client)
    result = runner.invoke(args=["users", "remove", "alice"])
    assert result.exit_code == 0, result.output
    (row,) = deliveries(app)
    assert row.reason == "user_removed" and row.client_id == "web"
    app.config["ISSUER"] = ISSUER
    assert deliver(app)["delivered"] == 1
    (claims,) = rp.tokens
    id_token = jwt.decode(first["id_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["sid"]) == (id_token["sub"], id_token["sid"])


def test_a_client_registered_again_under_a_removed_ones_id_is_not_told_of_its_sessions(app, client, rp, runner):
    """docs/cli.md: `clients remove` deletes the client with its codes, refresh tokens and consents,
    and a client registered again under the same id is not the old one. The sessions' record of
    the old client stayed, so the user's sign-out sent the new registrant a logout token with the
    user's sub and sid, from a sign-in that was never theirs."""
    import json as _json

    from identity.services.seed import apply_seed, load_seed

    AuthActions(client).login()
    web_tokens(client)
    assert runner.invoke(args=["clients", "remove", "web"]).exit_code == 0
    newcomer = {"client_id": "web", "client_secrets": ["another-owner-0123456789"],
                "allowed_grant_types": ["authorization_code"], "redirect_uris": ["https://new-owner.example/cb"],
                "allowed_scopes": ["openid"], "backchannel_logout_uri": rp.url}
    with app.app_context():
        apply_seed(load_seed(_json.dumps({"clients": [newcomer]})))
    assert AuthActions(client).logout().status_code == 200
    assert deliveries(app) == []


def test_a_client_registered_again_is_told_of_the_sessions_that_sign_in_to_it(app, client, rp, runner):
    """A worker remembers the (session, client) pairs it has recorded, to write each once. `clients
    remove` deletes the sessions' records of the client, but not the workers' memory of them: the
    same session signing in to a client registered again under the id was not recorded, and its
    sign-out told the new client nothing (its session there stayed open)."""
    import json as _json

    from identity.services.seed import apply_seed, load_seed

    AuthActions(client).login()
    web_tokens(client)  # recorded, and remembered by this worker
    assert runner.invoke(args=["clients", "remove", "web"]).exit_code == 0
    newcomer = {**FLOW_CLIENTS["clients"][0], "backchannel_logout_uri": rp.url}
    time.sleep(1.1)  # registered again a second later (timestamps are whole seconds)
    with app.app_context():
        apply_seed(load_seed(_json.dumps({"clients": [newcomer]})))
    web_tokens(client)  # the same browser session signs in to the new registration
    assert AuthActions(client).logout().status_code == 200
    assert [row.client_id for row in deliveries(app)] == ["web"]


def test_revoking_a_refresh_token_tells_its_client(app, client, rp):
    AuthActions(client).login()
    tokens = web_tokens(client)
    response = OAuthActions(client).client.post("/connect/revocation", data={"token": tokens["refresh_token"]},
                                                headers={"Authorization": "Basic d2ViOndlYi1zZWNyZXQtMDEyMzQ1Njc4OQ=="})
    assert response.status_code == 200
    (row,) = deliveries(app)
    assert row.reason == "revocation_endpoint"
    assert deliver(app)["delivered"] == 1 and rp.errors == []


def test_session_required_client_gets_no_token_without_a_session(app, client, rp):
    set_client(app, "legacy", backchannel_logout_uri=rp.url, backchannel_logout_session_required=True)
    token = OAuthActions(client).token("legacy", grant_type="password", username="bob",
                                       password="marble-violet-canyon-482", scope="openid offline_access").get_json()
    client.post("/connect/revocation", data={"token": token["refresh_token"], "client_id": "legacy",
                                             "client_secret": "legacy-secret-0123456789"})
    assert deliveries(app) == []  # the password grant has no session: no sid to send


def test_rp_down_then_back_up_gets_the_token_once(app, client, rp):
    AuthActions(client).login()
    web_tokens(client)
    rp.stop()
    AuthActions(client).logout()
    assert deliver(app) == {"delivered": 0, "retry": 1, "given_up": 0}
    (row,) = deliveries(app)
    assert row.attempts == 1 and row.next_attempt_at > row.created_at and "Connection" in row.last_error
    assert deliver(app)["retry"] == 0  # not due yet: backoff
    rp.start()  # the same port
    make_due_now(app)
    assert deliver(app)["delivered"] == 1
    assert deliver(app)["delivered"] == 0
    make_due_now(app)
    assert deliver(app)["delivered"] == 0
    assert len(rp.received) == 1 and rp.errors == []
    (row,) = deliveries(app)
    assert row.attempts == 2 and row.delivered_at is not None


@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0, "BACKCHANNEL_LOGOUT_RETRY_SECONDS": 3,
                                         "BACKCHANNEL_LOGOUT_BACKOFF_SECONDS": 1}])
def test_rp_answering_500_is_retried_then_given_up(app, client, rp):
    rp.status = 500
    AuthActions(client).login()
    web_tokens(client)
    AuthActions(client).logout()
    deadline = time.monotonic() + 20
    while deliveries(app)[0].gave_up_at is None and time.monotonic() < deadline:
        deliver(app)
        time.sleep(0.2)
    (row,) = deliveries(app)
    assert row.gave_up_at is not None and row.delivered_at is None
    assert row.attempts >= 2 and row.attempts == len(rp.received)  # retried, then no more
    assert row.last_error.startswith("HTTP 500")
    assert len({r["claims"]["jti"] for r in rp.received}) == 1  # the same token id on every attempt
    make_due_now(app)
    assert deliver(app)["retry"] == 0
    with app.app_context():
        assert db.session.scalar(select(AuditEvent.event).where(AuditEvent.event == "backchannel_logout_failed"))


@pytest.mark.parametrize("app_config", [{"BACKCHANNEL_LOGOUT_POLL_SECONDS": 1, "BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS": 1,
                                         "BACKCHANNEL_LOGOUT_BACKOFF_SECONDS": 1}])
def test_a_slow_rp_delays_no_request_and_times_out_then_succeeds(app, client, rp):
    rp.delay = 10  # far beyond the 1 s timeout: the bound on the request below is generous
    AuthActions(client).login()
    web_tokens(client)
    page = client.get("/account/logout")
    from conftest import csrf_token
    started = time.monotonic()
    response = client.post("/account/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < rp.delay  # the deliverer thread waits on the RP, not the request
    deadline = time.monotonic() + 20
    while not (deliveries(app)[0].last_error or "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "timed out" in deliveries(app)[0].last_error
    rp.delay = 0
    while deliveries(app)[0].delivered_at is None and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = deliveries(app)
    assert row.delivered_at is not None and row.attempts >= 2
    assert {t["jti"] for t in rp.tokens} == {row.jti}


@pytest.mark.parametrize("new_uri", ["elsewhere", None])
def test_a_uri_changed_or_removed_after_queueing_is_not_called(app, client, rp, new_uri):
    other = RelyingParty(jwks=rp.jwks, issuer=ISSUER, client_id="web").start()
    try:
        AuthActions(client).login()
        web_tokens(client)
        AuthActions(client).logout()
        set_client(app, "web", backchannel_logout_uri=other.url if new_uri else None)
        assert deliver(app) == {"delivered": 0, "retry": 0, "given_up": 1}
        assert rp.received == [] and other.received == []
        (row,) = deliveries(app)
        assert row.gave_up_at is not None and "no longer registered" in row.last_error
    finally:
        other.stop()


def test_concurrent_senders_deliver_each_token_once(app, client, rp):
    sessions = 12
    for _ in range(sessions):
        browser = app.test_client()
        AuthActions(browser).login()
        web_tokens(browser)
        AuthActions(browser).logout()
    assert len(deliveries(app)) == sessions
    results, start = [], threading.Barrier(4)

    def sender():
        start.wait()
        try:
            results.append(deliver(app))
        except Exception as err:  # surfaced by the assertion below
            results.append({"delivered": 0, "error": repr(err)})

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r["delivered"] for r in results) == sessions, results
    jtis = [t["jti"] for t in rp.tokens]
    assert len(jtis) == sessions and len(set(jtis)) == sessions
    assert rp.errors == []


def test_a_claim_takes_exactly_one_due_row_and_a_leased_row_is_not_taken_again(app, client, rp):
    from identity.store.logout import claim_due
    for _ in range(3):
        browser = app.test_client()
        AuthActions(browser).login()
        web_tokens(browser)
        AuthActions(browser).logout()
    with app.app_context():
        stamp = int(time.time())
        first = claim_due("owner-a", stamp, stamp + 60)
        second = claim_due("owner-b", stamp, stamp + 60)
        leased = db.session.scalars(select(LogoutDelivery.lease_owner).where(LogoutDelivery.leased_until.is_not(None)))
        assert sorted(leased) == ["owner-a", "owner-b"]
        assert first.id != second.id
        assert claim_due("owner-c", stamp, stamp + 60).id not in (first.id, second.id)
        assert claim_due("owner-d", stamp, stamp + 60) is None
        # a lease that ran out is taken again (a worker that died mid-delivery)
        assert claim_due("owner-e", stamp + 61, stamp + 120) is not None
        db.session.remove()


def test_the_cli_sends_what_is_due(app, client, rp, runner):
    AuthActions(client).login()
    web_tokens(client)
    AuthActions(client).logout()
    result = runner.invoke(args=["logout-deliveries", "run"])
    assert result.exit_code == 0, result.output
    assert result.output == "Delivered 1, to retry 0, given up 0.\n"
    again = runner.invoke(args=["logout-deliveries", "run", "--json"])
    assert again.exit_code == 0 and again.output.strip() == '{"delivered": 0, "retry": 0, "given_up": 0}'
    assert len(rp.tokens) == 1


def test_only_clients_with_a_logout_uri_are_recorded_once_per_session(app, client, rp):
    from identity.models import SessionClient
    AuthActions(client).login()
    web_tokens(client)
    web_tokens(client)
    assert OAuthActions(client).authorize(client_id="implicit", response_type="id_token", scope="openid",
                                          nonce="n-2").status_code == 302  # no logout URI: not recorded
    with app.app_context():
        assert list(db.session.scalars(select(SessionClient.client_id))) == ["web"]
        db.session.remove()


def test_a_code_replayed_again_and_again_tells_its_client_once(app, client, flow_clients):
    """A replayed code ends its family (RFC 6749 4.1.2), and the client is told at the back
    channel. A family of a code alone (no refresh token) was told again at every replay, so whoever
    held a used code could make the server post logout tokens to the client as often as it liked."""
    from sqlalchemy import func, select, update

    from actions import AuthActions, OAuthActions, redirect_params
    from identity.extensions import db
    from identity.models import Client, LogoutDelivery

    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web")
                           .values(backchannel_logout_uri="https://web.example.com/logout"))
        db.session.commit()
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    redeem = lambda: oauth.token("web", grant_type="authorization_code", code=code,
                                 redirect_uri="https://web.example.com/cb")
    assert "refresh_token" not in redeem().get_json()
    assert [redeem().status_code for _ in range(3)] == [400, 400, 400]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LogoutDelivery)) == 1


def test_a_logout_uri_with_a_non_ascii_path_is_called_percent_encoded(app, client, rp):
    """The seed takes an IRI ("/déconnexion"); http.client cannot write it in a request line
    (UnicodeEncodeError), so every logout token for that client failed and was given up."""
    from identity.services.input_schemas import check_logout_uri

    uri = rp.url + "/d\u00e9connexion?lang=fran\u00e7ais"
    with app.test_request_context():
        check_logout_uri(uri)  # the seed and `clients update` take it
    set_client(app, "web", backchannel_logout_uri=uri)
    AuthActions(client).login()
    web_tokens(client)
    AuthActions(client).logout()
    assert deliver(app) == {"delivered": 1, "retry": 0, "given_up": 0}
    assert rp.errors == [] and len(rp.tokens) == 1
    assert rp.received[0]["path"] == "/backchannel-logout/d%C3%A9connexion?lang=fran%C3%A7ais"


def test_a_delivery_dropped_unsent_is_not_counted_as_sent(app, client, rp):
    """identity_backchannel_logout_deliveries_total counts logout tokens sent (docs/metrics.md): a
    row given up because its URI is no longer registered sends nothing and counts nothing."""
    from identity.services import metrics

    def counted():
        return {r: metrics.REGISTRY.get_sample_value("identity_backchannel_logout_deliveries_total", {"result": r})
                for r in metrics.DELIVERY_RESULTS}

    AuthActions(client).login()
    web_tokens(client)
    AuthActions(client).logout()
    set_client(app, "web", backchannel_logout_uri=None)
    before = counted()
    assert deliver(app) == {"delivered": 0, "retry": 0, "given_up": 1}
    assert rp.received == [] and counted() == before
