"""Durable back-channel delivery across instances: two gunicorn servers (2 workers each) share
one PostgreSQL database and its logout queue. Every logout token reaches the RP exactly once,
whichever instance queued it; and a queue left behind by stopped servers (the RP was down) is
delivered by a server started later, once.

Needs PostgreSQL (FLASK_SQLALCHEMY_DATABASE_URI); `.ci/run` provides it.
"""

import os
import time

import pytest
import requests
from sqlalchemy import create_engine, text

from conftest import seeded_database
from rp_receiver import RelyingParty
from servers import AppServer, authorize, csrf_from, redirect_params, sign_in

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.server,
    pytest.mark.skipif(not DATABASE_URI.startswith("postgresql"),
                       reason="needs PostgreSQL shared by both instances: set FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://..."),
]

ISSUER = "https://id.example.test"
REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORD = "amber-falcon-river-314"
USERS = [f"user{i}" for i in range(8)]
ENV = {"FLASK_BACKCHANNEL_LOGOUT_POLL_SECONDS": "1", "FLASK_BACKCHANNEL_LOGOUT_BACKOFF_SECONDS": "1",
       "FLASK_BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS": "2"}


@pytest.fixture(scope="module")
def rp():
    receiver = RelyingParty(jwks={"keys": []}, issuer=ISSUER, client_id="webapp").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def shared_database(_migrated, database_uri, rp):
    seed = {
        "clients": [{"client_id": "webapp", "client_name": "Web App", "client_secrets": ["webapp-secret-0123456789"],
                     "allowed_grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI],
                     "allowed_scopes": ["openid", "profile"], "backchannel_logout_uri": rp.url}],
        "users": [{"username": name, "password": PASSWORD} for name in USERS],
    }
    return seeded_database(database_uri, seed)


def session_with_the_client(server: AppServer, username: str) -> requests.Session:
    browser = requests.Session()
    assert sign_in(browser, server.url, username, PASSWORD).status_code == 302, server.log(40)
    response, _ = authorize(browser, server.url, client_id="webapp", redirect_uri=REDIRECT_URI)
    assert "code" in redirect_params(response), server.log(40)
    return browser


def sign_out(server: AppServer, browser: requests.Session) -> None:
    page = browser.get(server.url + "/account/logout", timeout=30)
    response = browser.post(server.url + "/account/logout", data={"csrf_token": csrf_from(page.text)}, timeout=30)
    assert response.status_code == 200, server.log(40)


def failed_so_far(database_uri: str) -> set[str]:
    """The jti of each delivery attempted at least once and not delivered (yet)."""
    engine = create_engine(database_uri)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(text(
                "SELECT jti FROM logout_deliveries WHERE attempts > 0 AND delivered_at IS NULL AND gave_up_at IS NULL")))
    finally:
        engine.dispose()


def wait_for(condition, *servers, seconds: float = 30) -> None:
    """Poll until `condition()`, sending requests so that idle workers look at the queue too."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        for server in servers:
            requests.get(server.url + "/healthz", timeout=10)
        time.sleep(0.2)


def test_two_instances_deliver_every_token_once(shared_database, rp, tmp_path):
    common = dict(workers=2, issuer=ISSUER, env=ENV, log_dir=tmp_path)
    with AppServer(shared_database, name="A", migrate_first=True, **common) as a, \
            AppServer(shared_database, name="B", migrate_first=False, **common) as b:
        rp.jwks = requests.get(a.url + "/.well-known/openid-configuration/jwks", timeout=10).json()
        browsers = [(server, session_with_the_client(server, name))
                    for server, name in zip([a, b] * 4, USERS)]
        for index, (server, browser) in enumerate(browsers):
            sign_out(b if index % 3 else a, browser)  # signed out on either instance
        wait_for(lambda: len(rp.received) >= len(USERS), a, b)
        time.sleep(3)  # three more poll intervals: a duplicate would arrive now
        wait_for(lambda: False, a, b, seconds=2)
        assert rp.errors == []
        jtis = [claims["jti"] for claims in rp.tokens]
        assert len(jtis) == len(USERS) and len(set(jtis)) == len(USERS), (jtis, a.log(20), b.log(20))
        assert len({claims["sid"] for claims in rp.tokens}) == len(USERS)


def test_a_queue_left_by_stopped_servers_is_delivered_once_by_a_new_one(shared_database, rp, tmp_path):
    rp.received.clear()
    common = dict(workers=2, issuer=ISSUER, env=ENV, log_dir=tmp_path)
    rp.stop()  # the RP is down while the users sign out
    with AppServer(shared_database, name="C", migrate_first=False, **common) as c:
        for browser in [session_with_the_client(c, name) for name in USERS[:3]]:
            sign_out(c, browser)
        wait_for(lambda: len(failed_so_far(shared_database)) == 3, c)  # attempts fail and are scheduled again
    queued = failed_so_far(shared_database)
    assert len(queued) == 3
    rp.start()  # back up, on the same port, after every server that queued has stopped
    with AppServer(shared_database, name="D", migrate_first=False, **common) as d:
        wait_for(lambda: len(rp.received) >= 3, d)
        time.sleep(3)
        wait_for(lambda: False, d, seconds=2)
    jtis = [claims["jti"] for claims in rp.tokens]
    assert sorted(jtis) == sorted(queued) and rp.errors == []  # each once, those queued before
