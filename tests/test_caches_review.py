"""The workers' snapshots against the operator's changes: what a worker whose snapshot predates a
change may still do, and that nothing it does then outlives the documented period."""

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, redirect_params
from conftest import FLOW_CLIENTS, FLOW_SECRETS
from identity.extensions import db
from identity.models import Client, Consent, RefreshToken

CLIENT_CACHE_SECONDS = 3


@pytest.fixture
def app_config():
    return {"CLIENT_CACHE_SECONDS": CLIENT_CACHE_SECONDS}


def web_tokens(client) -> dict:
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def rows_of(app, model, client_id: str) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model).where(model.client_id == client_id))
        finally:
            db.session.remove()


def client_exists(app, client_id: str) -> bool:
    return rows_of(app, Client, client_id) > 0


def test_nothing_a_stale_worker_issues_to_a_removed_client_outlives_the_removal(app, client, flow_clients):
    """`clients remove` deletes the client with its codes, refresh tokens and consents. A worker
    whose client snapshot predates the removal still serves the client for CLIENT_CACHE_SECONDS,
    and what it issued meanwhile (a refresh token good for 30 days, a consent) stayed: once the
    client was registered again under its id, the refresh token redeemed for the new registration."""
    AuthActions(client).login()
    web_tokens(client)  # this worker now holds a snapshot of `web`

    def remove():
        from identity.services.clients import remove_client

        with app.app_context():
            remove_client("web")
            db.session.remove()

    remover = threading.Thread(target=remove)
    remover.start()
    deadline = time.monotonic() + 10
    while client_exists(app, "web"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stale = web_tokens(client)  # the removal has committed; this worker's snapshot has not caught up
    remover.join(30)
    assert not remover.is_alive()
    assert rows_of(app, RefreshToken, "web") == 0, "a refresh token issued to the removed client outlived its removal"

    with app.app_context():
        from identity.services.seed import apply_seed, load_seed

        apply_seed(load_seed(json.dumps({"clients": [FLOW_CLIENTS["clients"][0]]})))  # registered again
        db.session.remove()
    time.sleep(CLIENT_CACHE_SECONDS)  # every snapshot is of the new registration
    refreshed = OAuthActions(client).token("web", grant_type="refresh_token", refresh_token=stale["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()
    assert FLOW_SECRETS["web"]


def test_a_client_made_public_by_the_seed_redeems_nothing_a_stale_worker_issued_with_its_secret(app, client,
                                                                                                 flow_clients):
    """docs/cli.md: a seed that drops every secret of a confidential client revokes its codes and
    refresh tokens, since a public client would redeem them with no secret. A worker whose snapshot
    predates the seed still authenticated the client with its old secret for CLIENT_CACHE_SECONDS
    and issued it refresh tokens, which then redeemed with no secret at all."""
    AuthActions(client).login()
    web_tokens(client)  # this worker now holds a snapshot of `web`, confidential

    def make_public():
        from identity.services.seed import apply_seed, load_seed

        with app.app_context():
            apply_seed(load_seed(json.dumps({"clients": [{**FLOW_CLIENTS["clients"][0], "client_secrets": [], "require_pkce": True}]})))
            db.session.remove()

    seeder = threading.Thread(target=make_public)
    seeder.start()
    deadline = time.monotonic() + 10
    while True:
        with app.app_context():
            hashes = db.session.scalar(select(Client.secret_hashes).where(Client.client_id == "web"))
            db.session.remove()
        if not hashes:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stale = web_tokens(client)  # issued with the old secret, by this worker's older snapshot
    seeder.join(30)
    assert not seeder.is_alive()
    time.sleep(CLIENT_CACHE_SECONDS)  # every worker now knows the client is public
    refreshed = OAuthActions(client).token("web", auth="none", grant_type="refresh_token",
                                           refresh_token=stale["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()


def test_a_secret_replaced_by_the_seed_is_refused_by_every_worker_once_the_seed_returns(app, client, seeded):
    """A leaked secret is replaced in the seed file. A worker whose client snapshot predates the
    seed still took the old secret for CLIENT_CACHE_SECONDS after `seed` had said it was done, so
    whoever held the leaked secret kept getting tokens with it after the operator's step."""
    oauth = OAuthActions(client)
    before = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    assert before.status_code == 200, before.get_json()  # this worker now holds a snapshot of `service`
    replaced = next(c for c in seeded["clients"] if c["client_id"] == "service")
    with app.app_context():
        from identity.services.seed import apply_seed, load_seed

        apply_seed(load_seed(json.dumps({"clients": [{**replaced, "client_secrets": ["service-secret-replaced-0123"]}]})))
        db.session.remove()
    after = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    assert after.status_code == 401 and after.get_json()["error"] == "invalid_client", after.get_json()
    oauth.SECRETS = {**oauth.SECRETS, "service": "service-secret-replaced-0123"}
    renewed = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    assert renewed.status_code == 200, renewed.get_json()
