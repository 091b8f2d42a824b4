"""The app served the way it is deployed: gunicorn with gunicorn.conf.py and two workers."""

import os

import pytest
import requests

from servers import GunicornServer

pytestmark = pytest.mark.server


@pytest.fixture
def server_database_uri(tmp_path):
    """PostgreSQL when the suite runs on it (the tables are emptied by the next `app` fixture),
    else a SQLite file of this test's own."""
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if uri and uri.startswith("postgresql"):
        return uri
    return "sqlite:///" + str(tmp_path / "gunicorn.db")


def test_gunicorn_serves_health_and_discovery(server_database_uri, tmp_path):
    with GunicornServer(server_database_uri, workers=2, name="smoke", log_dir=tmp_path) as server:
        health = requests.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200, server.log()

        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, f"{ready.text}\n{server.log()}"

        # Several requests, so that both workers are likely to answer at least one.
        for _ in range(6):
            response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
            assert response.status_code == 200, f"{response.text}\n{server.log()}"
            assert response.headers["Content-Type"].startswith("application/json")
            document = response.json()
            assert document["issuer"] == server.url
            assert document["jwks_uri"] == server.url + "/.well-known/openid-configuration/jwks"
            assert document["token_endpoint"] == server.url + "/connect/token"

        jwks = requests.get(document["jwks_uri"], timeout=10).json()
        assert jwks["keys"], "no signing key published"
        assert all("d" not in key for key in jwks["keys"]), "private key material in the JWKS"

    log = server.log(tail=1000)
    # The access log carries paths only: no query strings.
    assert "GET /.well-known/openid-configuration HTTP/1.1" in log
    assert "Booting worker" in log


def test_access_log_leaves_out_query_strings(server_database_uri, tmp_path):
    with GunicornServer(server_database_uri, workers=1, name="querylog", log_dir=tmp_path) as server:
        requests.get(server.url + "/healthz?code=SECRET-CODE-123&access_token=SECRET-TOKEN-456", timeout=10)
    log = server.log(tail=1000)
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert "SECRET-CODE-123" not in log and "SECRET-TOKEN-456" not in log
