"""The password grant's error code and rate limit, and the grant-type combinations a client may
not hold (IdentityServer4's rules), in the seed file and the CLI."""

import copy
import json

import pytest
from sqlalchemy import func, select

from actions import OAuthActions
from conftest import DEMO_SEED, FLOW_CLIENTS
from identity.errors import ValidationFailed
from identity.extensions import db
from identity.models import Client, User
from identity.services.seed import apply_seed, load_seed

BOB_PASSWORD = "marble-violet-canyon-482"
CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1}


def password_grant(oauth, password, **extra):
    return oauth.token("legacy", grant_type="password", username="bob", password=password, scope="openid", **extra)


# --- the password grant ---------------------------------------------------------------------------


def test_wrong_password_on_the_password_grant_is_invalid_grant(client, flow_clients):
    oauth = OAuthActions(client)
    response = password_grant(oauth, "not-bobs-password-at-all")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert "access_token" not in response.get_json()
    unknown = oauth.token("legacy", grant_type="password", username="nobody", password="whatever-it-is", scope="openid")
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "invalid_grant"
    assert password_grant(oauth, BOB_PASSWORD).status_code == 200


LIMITED = {**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
           "RATELIMIT_SENSITIVE": "3 per minute", "RATELIMIT_DEFAULT": "1000 per minute"}


@pytest.mark.parametrize("app_config", [LIMITED])
def test_password_grant_is_held_to_the_sign_in_limit(client, flow_clients):
    oauth = OAuthActions(client)
    statuses = [password_grant(oauth, "not-bobs-password-at-all").status_code for _ in range(3)]
    assert statuses == [400, 400, 400]
    limited = password_grant(oauth, BOB_PASSWORD)
    assert limited.status_code == 429, limited.get_data(as_text=True)
    assert int(limited.headers["Retry-After"]) > 0
    assert "access_token" not in (limited.get_json() or {})


@pytest.mark.parametrize("app_config", [LIMITED])
def test_password_grant_limit_counts_other_body_encodings_too(client, flow_clients):
    """A multipart body reaches the same grant through Authlib's own request: it is counted too."""
    for _ in range(3):
        password_grant(OAuthActions(client), "not-bobs-password-at-all")
    response = client.post("/connect/token", data={"grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
                                                    "scope": "openid", "client_id": "legacy",
                                                    "client_secret": "legacy-secret-0123456789"},
                           content_type="multipart/form-data")
    assert response.status_code == 429


@pytest.mark.parametrize("app_config", [LIMITED])
def test_password_grant_named_in_the_query_is_held_to_the_sign_in_limit(client, flow_clients):
    """The token endpoint reads the query with the body: `?grant_type=password` is a password grant."""
    body = {"username": "bob", "scope": "openid", "client_id": "legacy", "client_secret": "legacy-secret-0123456789"}
    statuses = [client.post("/connect/token?grant_type=password", data={**body, "password": f"not-bobs-password-{i}"}).status_code
                for i in range(3)]
    assert statuses == [400, 400, 400]
    limited = client.post("/connect/token?grant_type=password", data={**body, "password": BOB_PASSWORD})
    assert limited.status_code == 429, limited.get_json()
    assert "access_token" not in (limited.get_json() or {})
    # the same in the body, after the query's three: one limit, counted once a request
    assert password_grant(OAuthActions(client), BOB_PASSWORD).status_code == 429


@pytest.mark.parametrize("app_config", [LIMITED])
def test_other_grants_are_not_held_to_the_sign_in_limit(client, flow_clients):
    oauth = OAuthActions(client)
    statuses = [oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").status_code
                for _ in range(6)]
    assert statuses == [200] * 6


# --- grant-type combinations ----------------------------------------------------------------------


FORBIDDEN = [
    (["authorization_code", "implicit"], "implicit"),
    (["hybrid", "authorization_code"], "hybrid"),
    (["implicit", "hybrid"], "hybrid"),
]


def counts(app):
    with app.app_context():
        return db.session.scalar(select(func.count(Client.id))), db.session.scalar(select(func.count(User.id)))


@pytest.mark.parametrize("grant_types, named", FORBIDDEN)
def test_seed_refuses_forbidden_grant_type_combinations_whole(app, grant_types, named):
    doc = copy.deepcopy(FLOW_CLIENTS)
    doc["clients"][0]["allowed_grant_types"] = grant_types  # the "web" client
    before = counts(app)
    with app.app_context(), pytest.raises(ValidationFailed) as err:
        apply_seed(load_seed(json.dumps(doc)))
    messages = err.value.errors
    assert "client 'web'" in messages, messages
    text = " ".join(messages["client 'web'"])
    assert "allowed_grant_types" in text and named in text
    assert counts(app) == before == (0, 0)  # nothing written, not even the other clients and users


def test_demo_seed_still_passes(app):
    with app.app_context():
        report = apply_seed(load_seed(DEMO_SEED.read_text()))
    assert report.created


@pytest.mark.parametrize("grant_types, named", FORBIDDEN)
def test_cli_refuses_forbidden_grant_type_combinations(runner, app, grant_types, named):
    args = ["clients", "add", "combo", "--redirect-uri", "https://combo.example/cb"]
    for grant in grant_types:
        args += ["--grant-type", grant]
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert "allowed_grant_types" in result.output and named in result.output and "combo" in result.output, result.output
    with app.app_context():
        assert db.session.scalar(select(Client).where(Client.client_id == "combo")) is None


def test_cli_still_takes_allowed_combinations(runner, app):
    result = runner.invoke(args=["clients", "add", "both", "--grant-type", "authorization_code", "--grant-type",
                                 "client_credentials", "--redirect-uri", "https://both.example/cb"])
    assert result.exit_code == 0, result.output
