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


def test_a_logout_token_queued_without_an_issuer_names_the_issuer_discovery_names(app, client, flow_clients, runner):
    """A logout queued where no issuer was known (an operator's command without ISSUER) is signed
    with the configured one at send time: as discovery and every ID token write it, without the
    trailing slash ISSUER may be set with, or the relying party refuses the logout token."""
    import jwt
    from sqlalchemy import select, update

    from actions import AuthActions, redirect_params
    from identity.extensions import db
    from identity.models import Client, LogoutDelivery
    from identity.services.logout_delivery import deliver_due
    from rp_receiver import RelyingParty

    issuer = "https://localhost"
    rp = RelyingParty(jwks=client.get("/.well-known/openid-configuration/jwks").get_json(), issuer=issuer,
                      client_id="web").start()
    try:
        with app.app_context():
            db.session.execute(update(Client).where(Client.client_id == "web").values(backchannel_logout_uri=rp.url))
            db.session.commit()
        AuthActions(client).login()
        oauth = OAuthActions(client)
        code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
        tokens = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
        id_token = jwt.decode(tokens.get_json()["id_token"], options={"verify_signature": False})
        assert id_token["iss"] == issuer
        result = runner.invoke(args=["users", "set-password", "alice"], input="an-entirely-new-passphrase-42\n" * 2)
        assert result.exit_code == 0, result.output

        app.config["ISSUER"] = issuer + "/"  # the operator's spelling; discovery names it without the slash
        assert client.get("/.well-known/openid-configuration").get_json()["issuer"] == issuer
        with app.app_context():
            assert [row.issuer for row in db.session.scalars(select(LogoutDelivery))] == [None]
            sent = deliver_due()
            db.session.remove()
        assert rp.errors == []
        assert sent["delivered"] == 1
        assert [claims["iss"] for claims in rp.tokens] == [issuer]
    finally:
        rp.stop()


@pytest.mark.parametrize("app_config", [{"GRANT_TYPES_ENABLED": ["implicit"]}, {"GRANT_TYPES_ENABLED": ["hybrid", "implicit"]}])
def test_query_is_not_advertised_when_no_enabled_response_type_takes_it(client, flow_clients, app_config):
    """response_mode=query is refused for every response type that returns a token or an ID token
    (OAuth 2.0 Multiple Response Type Encoding Practices, section 5); with only those enabled,
    discovery must not offer it."""
    from urllib.parse import urlencode

    from actions import AuthActions, redirect_params, pkce_pair

    doc = client.get("/.well-known/openid-configuration").get_json()
    AuthActions(client).login()
    oauth = OAuthActions(client)
    answers = {}
    for response_type in doc["response_types_supported"]:
        client_id = "implicit" if response_type.startswith("id_token") else "mobile"
        _, challenge = pkce_pair()
        params = oauth.authorize_params(client_id=client_id, response_type=response_type, response_mode="query",
                                        nonce="n-1", code_challenge=challenge, code_challenge_method="S256")
        response = client.get("/connect/authorize?" + urlencode(params))
        answers[response_type] = redirect_params(response.headers["Location"]).get("error")
    assert set(answers.values()) == {"invalid_request"}, answers

    assert "query" not in doc["response_modes_supported"], doc["response_modes_supported"]
    assert {"fragment", "form_post"} <= set(doc["response_modes_supported"])
