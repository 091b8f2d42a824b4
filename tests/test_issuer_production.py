"""The issuer in production: required at start; without it (development) the discovery document,
built from the request's Host, never goes into a shared cache nor answers another Host."""

import pytest
from cryptography.fernet import Fernet

from app import create_app
from identity.config.startup import ConfigurationError

DISCOVERY = "/.well-known/openid-configuration"
JWKS = DISCOVERY + "/jwks"


def test_production_refuses_to_start_without_an_issuer(instance, monkeypatch):
    monkeypatch.delenv("FLASK_ISSUER", raising=False)
    with pytest.raises(ConfigurationError) as err:
        create_app({"TESTING": True, "SECRET_KEY": "k" * 32, "ENVIRONMENT": "production",
                    "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")})
    message = str(err.value)
    assert "FLASK_ISSUER" in message and "\n" not in message


def test_production_starts_with_an_issuer(instance):
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 32, "ENVIRONMENT": "production",
                      "KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(), "ISSUER": "https://id.example.com",
                      "MAIL_SERVER": "smtp.example.com", "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")})
    assert app.config["ISSUER"] == "https://id.example.com"


def assert_not_shared(response):
    cache_control = response.headers.get("Cache-Control", "")
    assert "public" not in cache_control, cache_control
    assert "no-store" in cache_control or ("private" in cache_control and "Host" in response.headers.get("Vary", "")), \
        (cache_control, response.headers.get("Vary"))


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}])
def test_a_host_derived_document_is_never_put_in_a_shared_cache(app, client, seeded):
    first = client.get(DISCOVERY, headers={"Host": "evil.test"})  # built by the Flask view
    second = client.get(DISCOVERY, headers={"Host": "evil.test"})  # answered from the worker's cache
    for response in (first, second):
        assert response.status_code == 200
        assert response.get_json()["issuer"] == "https://evil.test"
        assert_not_shared(response)
    revalidated = client.get(DISCOVERY, headers={"Host": "evil.test", "If-None-Match": second.headers["ETag"]})
    assert revalidated.status_code == 304
    assert_not_shared(revalidated)


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}])
def test_a_document_built_for_one_host_does_not_answer_another(app, client, seeded):
    for _ in range(2):  # the second round comes from the worker's cache
        for host in ("a.test", "b.test", "B.test:443", "a.test:8443"):
            doc = client.get(DISCOVERY, headers={"Host": host}).get_json()
            assert doc["issuer"].lower() == f"https://{host}".lower().removesuffix(":443"), (host, doc["issuer"])
            assert doc["token_endpoint"] == doc["issuer"] + "/connect/token"


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://id.example.com", "SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}])
def test_a_configured_issuer_keeps_public_caching(app, client, seeded):
    for _ in range(2):
        response = client.get(DISCOVERY, headers={"Host": "evil.test"})
        assert response.get_json()["issuer"] == "https://id.example.com"
        assert response.headers["Cache-Control"].startswith("public, max-age=")


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}])
def test_jwks_names_no_host_and_stays_publicly_cacheable(app, client, seeded):
    for _ in range(2):
        response = client.get(JWKS, headers={"Host": "evil.test"})
        assert response.status_code == 200 and "evil.test" not in response.get_data(as_text=True)
        assert response.headers["Cache-Control"].startswith("public, max-age=")
