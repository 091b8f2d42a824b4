"""The discovery document, and the other paths anyone may call: 404s, /healthz, /readyz."""

import pytest

from app import create_app
from identity.extensions import db

DISCOVERY = "/.well-known/openid-configuration"

ENDPOINTS = {
    "authorization_endpoint": "/connect/authorize",
    "token_endpoint": "/connect/token",
    "userinfo_endpoint": "/connect/userinfo",
    "end_session_endpoint": "/connect/endsession",
    "revocation_endpoint": "/connect/revocation",
    "introspection_endpoint": "/connect/introspect",
    "jwks_uri": "/.well-known/openid-configuration/jwks",
}
ALL_RESPONSE_TYPES = {"code", "code id_token", "code token", "code id_token token", "id_token", "id_token token"}


def discover(client, **kwargs) -> dict:
    response = client.get(DISCOVERY, **kwargs)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_document_has_every_field(client):
    doc = discover(client)

    assert doc["issuer"] == "https://localhost"
    for name, path in ENDPOINTS.items():
        assert doc[name] == "https://localhost" + path
    assert set(doc["response_types_supported"]) == ALL_RESPONSE_TYPES
    assert set(doc["grant_types_supported"]) == {
        "authorization_code", "implicit", "refresh_token", "client_credentials", "password"}
    assert {"openid", "profile", "email", "offline_access", "IdentityServerApi"} <= set(doc["scopes_supported"])
    assert doc["subject_types_supported"] == ["public"]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"sub", "name", "preferred_username", "email", "email_verified"} <= set(doc["claims_supported"])
    assert {"query", "fragment", "form_post"} <= set(doc["response_modes_supported"])


def test_offline_access_is_advertised_with_refresh_tokens(client):
    assert "offline_access" in discover(client)["scopes_supported"]


def test_scopes_follow_the_database(client, runner):
    assert runner.invoke(args=["scopes", "add", "orders"]).exit_code == 0

    assert "orders" in discover(client)["scopes_supported"]


def test_every_advertised_signing_alg_has_a_published_key(client):
    doc = discover(client)
    published = {key["alg"] for key in client.get(doc["jwks_uri"].removeprefix("https://localhost")).get_json()["keys"]}

    assert set(doc["id_token_signing_alg_values_supported"]) <= published


@pytest.mark.parametrize("app_config", [{"ACCESS_TOKEN_SIGNING_ALG": "ES256"}])
def test_rs256_is_published_even_when_es256_is_configured(client):
    test_every_advertised_signing_alg_has_a_published_key(client)


def test_id_tokens_are_signed_with_the_one_alg_discovery_offers(client, flow_clients):
    """Discovery must offer RS256, and a client that registered no id_token_signed_response_alg
    (this server has no such setting) must get RS256 ID tokens (OpenID Connect Core 3.1.3.7,
    Registration 2): the document lists only what ID tokens are signed with."""
    import jwt as pyjwt
    from actions import AuthActions, OAuthActions

    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="native", scope="openid")

    assert discover(client)["id_token_signing_alg_values_supported"] == ["RS256"]
    assert pyjwt.get_unverified_header(token.get_json()["id_token"])["alg"] == "RS256"


def test_es256_id_tokens_are_refused_at_start(_migrated, database_uri):
    """With ES256 ID tokens, discovery said RS256 too (which it must), yet no client could get one."""
    from conftest import make_config
    from identity.config.startup import ConfigurationError

    with pytest.raises(ConfigurationError, match="ID_TOKEN_SIGNING_ALG must be RS256"):
        create_app(make_config(database_uri, ID_TOKEN_SIGNING_ALG="ES256"))


# --- the issuer ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://id.example.com/"}])
def test_configured_issuer_wins_over_the_request_host(client):
    doc = discover(client, base_url="http://internal:8000", headers={"X-Forwarded-Host": "evil.example"})

    assert doc["issuer"] == "https://id.example.com"
    for name, path in ENDPOINTS.items():
        assert doc[name] == "https://id.example.com" + path


def test_issuer_is_the_request_scheme_and_host_when_not_configured(client):
    doc = discover(client, base_url="http://id.internal:8080")

    assert doc["issuer"] == "http://id.internal:8080"
    assert doc["token_endpoint"] == "http://id.internal:8080/connect/token"


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example.org", "X-Forwarded-For": "203.0.113.9"}


def test_forwarded_headers_are_ignored_by_default(client):
    doc = discover(client, base_url="http://backend:8000", headers=dict(FORWARDED))

    assert doc["issuer"] == "http://backend:8000"


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1}])
def test_forwarded_headers_are_honoured_behind_a_trusted_proxy(client):
    doc = discover(client, base_url="http://backend:8000", headers=dict(FORWARDED))

    assert doc["issuer"] == "https://id.example.org"
    assert doc["authorization_endpoint"] == "https://id.example.org/connect/authorize"


# --- features that are off are not advertised ------------------------------------------------------


@pytest.mark.parametrize(
    "app_config", [{"GRANT_TYPES_ENABLED": ["authorization_code", "hybrid", "client_credentials", "refresh_token"]}]
)
def test_disabled_implicit_is_not_advertised(client):
    doc = discover(client)

    assert "implicit" not in doc["grant_types_supported"]
    assert set(doc["response_types_supported"]) == {"code", "code id_token", "code token", "code id_token token"}
    assert "password" not in doc["grant_types_supported"]


@pytest.mark.parametrize("app_config", [{"GRANT_TYPES_ENABLED": ["client_credentials"]}])
def test_only_client_credentials(client):
    doc = discover(client)

    assert doc["grant_types_supported"] == ["client_credentials"]
    assert doc["response_types_supported"] == []
    assert "offline_access" not in doc["scopes_supported"]  # no refresh tokens to offer
    assert "openid" in doc["scopes_supported"]


# --- caching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://localhost"}])  # public only for a configured issuer
@pytest.mark.parametrize("path", [DISCOVERY, DISCOVERY + "/jwks"])
def test_etag_and_cache_control(client, path):
    first = client.get(path)
    etag = first.headers["ETag"]

    again = client.get(path, headers={"If-None-Match": etag})

    assert first.status_code == 200 and etag
    assert "max-age=300" in first.headers["Cache-Control"] and "public" in first.headers["Cache-Control"]
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200


@pytest.mark.parametrize("app_config", [{"DISCOVERY_CACHE_SECONDS": 60, "ISSUER": "https://localhost"}])
def test_cache_lifetime_follows_the_setting(client):
    assert "max-age=60" in client.get(DISCOVERY).headers["Cache-Control"]


def test_etag_changes_with_the_document(client, runner):
    etag = client.get(DISCOVERY).headers["ETag"]
    runner.invoke(args=["scopes", "add", "orders"])

    response = client.get(DISCOVERY, headers={"If-None-Match": etag})

    assert response.status_code == 200
    assert response.headers["ETag"] != etag


def test_many_hosts_do_not_grow_the_cache_without_bound(app, client):
    for i in range(300):
        client.get(DISCOVERY, base_url=f"https://host{i}.example")

    assert len(app.extensions.get("identity_discovery", {})) <= 100


# --- unknown paths ---------------------------------------------------------------------------------


def test_unknown_page_is_a_friendly_404(client):
    response = client.get("/no/such/page", headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "404" in body and "<html" in body.lower()
    assert "Traceback" not in body and "werkzeug" not in body.lower()


@pytest.mark.parametrize("path", ["/connect/nothing-here", "/.well-known/nothing-here"])
def test_unknown_protocol_path_is_oauth_json(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_request"


def test_wrong_method_on_discovery(client):
    response = client.post(DISCOVERY)

    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


# --- operations ------------------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_everything_is_fine(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_names_the_command_when_the_schema_is_missing(tmp_path):
    app = create_app({
        "TESTING": True, "ENVIRONMENT": "testing", "SECRET_KEY": "x" * 32,
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "empty.db"),
    })
    try:
        response = app.test_client().get("/readyz")

        assert response.status_code == 503
        assert "flask --app app db upgrade" in response.get_json()["reason"]
    finally:
        with app.app_context():
            db.engine.dispose()
