"""Refresh-token rotation across gunicorn worker processes: exactly once, on SQLite as on PostgreSQL.

A rotation reads the token on the process's autocommit connection and writes once (one
statement on PostgreSQL; one BEGIN IMMEDIATE transaction behind a file lock on SQLite), so
these tests race the same token in two worker processes and check the database afterwards.
"""

import hashlib

import pytest
import requests
from sqlalchemy import create_engine, text

from servers import password_grant_seed, run_together, seeded_server, token_request

pytestmark = pytest.mark.server

SECRET = "rotation-secret-0123456789"
PASSWORD = "tulip-quartz-harbor-917"
SEED = password_grant_seed("rotator", SECRET, "alice", PASSWORD, offline_access=True)


@pytest.fixture
def server(tmp_path):
    with seeded_server(tmp_path, SEED, name="rotation") as running:
        yield running


def first_refresh_token(server) -> str:
    response = token_request(server.url, "rotator", SECRET, grant_type="password", username="alice",
                             password=PASSWORD, scope="openid offline_access IdentityServerApi")
    assert response.status_code == 200, f"{response.text}\n{server.log()}"
    return response.json()["refresh_token"]


def refresh(server, token: str) -> requests.Response:
    return token_request(server.url, "rotator", SECRET, grant_type="refresh_token", refresh_token=token)


def family_rows(server, token: str) -> list:
    """The stored rows of the family `token` belongs to, oldest first (the database may be shared)."""
    engine = create_engine(server.database_uri)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(
                "SELECT family_id, consumed_at, revoked_at, access_token_jti FROM refresh_tokens WHERE family_id = "
                "(SELECT family_id FROM refresh_tokens WHERE token_hash = :hash) ORDER BY id"),
                {"hash": hashlib.sha256(token.encode()).hexdigest()}))
    finally:
        engine.dispose()


def test_a_chain_of_rotations_stores_each_successor_once(server):
    token = first = first_refresh_token(server)
    for _ in range(6):
        response = refresh(server, token)
        assert response.status_code == 200, f"{response.text}\n{server.log()}"
        assert response.json()["refresh_token"] != token
        token = response.json()["refresh_token"]
    rows = family_rows(server, first)
    assert len(rows) == 7
    assert len({row.family_id for row in rows}) == 1
    assert [row.consumed_at is not None for row in rows] == [True] * 6 + [False]
    assert all(row.revoked_at is None for row in rows)
    assert all(row.access_token_jti for row in rows), "each token records the access token issued with it"


def test_the_same_token_at_once_in_two_workers_wins_once_and_revokes_the_family(server):
    for _round in range(3):
        token = first_refresh_token(server)
        statuses = [r.status_code if isinstance(r, requests.Response) else repr(r)
                    for r in run_together(*[lambda: refresh(server, token)] * 8)]
        assert statuses.count(200) == 1, f"{statuses}\n{server.log()}"
        assert set(statuses) == {200, 400}, statuses
        # the raced family is revoked, the winner's successor included
        rows = family_rows(server, token)
        assert len(rows) == 2 and all(row.revoked_at is not None for row in rows), rows


def test_a_replayed_token_is_refused_and_revokes_its_successor(server):
    first = first_refresh_token(server)
    second = refresh(server, first)
    assert second.status_code == 200
    replay = refresh(server, first)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    after = refresh(server, second.json()["refresh_token"])
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    access = second.json()["access_token"]
    account = requests.get(server.url + "/localapi/account", headers={"Authorization": f"Bearer {access}"}, timeout=10)
    assert account.status_code == 401, "the successor's access token is revoked with the family"
