"""Review from outside: what the server says about itself (discovery, JWKS, the OpenAPI document)
held against what it does."""

import pytest

from conftest import ALICE_PASSWORD
from actions import OAuthActions


def bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


def password_token(client, scope: str) -> str:
    response = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                          scope=scope)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def openapi(client) -> dict:
    response = client.get("/localapi/openapi.json", headers=bearer(password_token(client, "openid IdentityServerApi")))
    assert response.status_code == 200
    return response.get_json()


def test_openapi_does_not_promise_a_403_to_client_tokens_that_read_it(client, flow_clients):
    """The document says its own operation refuses a token issued to a client alone; it serves one."""
    service = OAuthActions(client).token("service", grant_type="client_credentials", scope="IdentityServerApi")
    response = client.get("/localapi/openapi.json", headers=bearer(service.get_json()["access_token"]))
    assert response.status_code == 200

    described = openapi(client)["paths"]["/localapi/openapi.json"]["get"]["responses"]["403"]["description"]
    assert "without a user" not in described, described


def test_openapi_declares_the_challenge_every_403_carries(client, flow_clients):
    """Every 403 of the local API carries a WWW-Authenticate challenge (RFC 6750 section 3.1
    insufficient_scope; RFC 9470 for a second factor); the document declares it only on the 401s."""
    response = client.get("/localapi/account", headers=bearer(password_token(client, "openid profile")))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_scope"')

    document = openapi(client)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            forbidden = operation["responses"]["403"]
            assert "WWW-Authenticate" in forbidden.get("headers", {}), f"{method.upper()} {path}: 403 without WWW-Authenticate"

