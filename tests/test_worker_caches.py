"""Each of a worker's caches has its own setting: the key ring (SIGNING_KEY_RELOAD_SECONDS), the
clients' CORS origins (CORS_ORIGINS_CACHE_SECONDS), the built discovery document
(DISCOVERY_DOCUMENT_CACHE_SECONDS); one set to 0 re-reads at once, whatever the others say."""

import pytest

from identity.services import clients

WEB_ORIGIN = "https://new.example.com"
NEW_CLIENT = {"client_id": "new-spa", "allowed_grant_types": ["authorization_code"],
              "redirect_uris": [WEB_ORIGIN + "/cb"], "allowed_cors_origins": [WEB_ORIGIN]}


def add_client_after_first_look(app) -> tuple[set, set]:
    with app.app_context():
        before = set(clients.cors_origins())
        clients.add_client(NEW_CLIENT, generate_secret=False)
        return before, set(clients.cors_origins())


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS_CACHE_SECONDS": 60, "SIGNING_KEY_RELOAD_SECONDS": 0}])
def test_cors_origins_are_kept_for_their_own_period(app, seeded):
    before, after = add_client_after_first_look(app)
    assert WEB_ORIGIN not in after and after == before


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS_CACHE_SECONDS": 0, "SIGNING_KEY_RELOAD_SECONDS": 60}])
def test_cors_origins_are_read_again_when_their_period_is_zero(app, client, seeded):
    before, after = add_client_after_first_look(app)
    assert WEB_ORIGIN not in before and WEB_ORIGIN in after
    response = client.post("/connect/token", headers={"Origin": WEB_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == WEB_ORIGIN


def view_calls(app, endpoint) -> list:
    calls, view = [], app.view_functions[endpoint]
    app.view_functions[endpoint] = lambda *a, **kw: calls.append(1) or view(*a, **kw)
    return calls


@pytest.mark.parametrize("app_config", [{"DISCOVERY_DOCUMENT_CACHE_SECONDS": 60, "SIGNING_KEY_RELOAD_SECONDS": 0}])
def test_the_discovery_document_and_the_jwks_follow_their_own_settings(app, client, seeded):
    discovery = view_calls(app, "discovery.openid_configuration")
    jwks = view_calls(app, "discovery.jwks")
    for _ in range(3):
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert client.get("/.well-known/openid-configuration/jwks").status_code == 200
    assert (len(discovery), len(jwks)) == (1, 3), "the document from the worker's cache, the JWKS re-read each time"


@pytest.mark.parametrize("app_config", [{"DISCOVERY_DOCUMENT_CACHE_SECONDS": 0, "SIGNING_KEY_RELOAD_SECONDS": 60}])
def test_the_jwks_is_kept_while_the_document_is_rebuilt(app, client, seeded):
    discovery = view_calls(app, "discovery.openid_configuration")
    jwks = view_calls(app, "discovery.jwks")
    for _ in range(3):
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert client.get("/.well-known/openid-configuration/jwks").status_code == 200
    assert (len(discovery), len(jwks)) == (3, 1)


@pytest.mark.parametrize("name", ["CORS_ORIGINS_CACHE_SECONDS", "DISCOVERY_DOCUMENT_CACHE_SECONDS"])
@pytest.mark.parametrize("value", [-1, "5", True, None])
def test_a_cache_period_must_be_seconds(database_uri, name, value):
    from conftest import make_config

    from app import create_app
    from identity.config.startup import ConfigurationError

    with pytest.raises(ConfigurationError, match=name):
        create_app(make_config(database_uri, **{name: value}))
