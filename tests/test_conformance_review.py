"""Review from outside: what the OpenID Foundation's conformance plans (Basic, Implicit, Hybrid,
Config OP) and OpenID Connect Core 1.0 / Discovery 1.0 require at the edges."""

from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import AuthorizationCode


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _codes(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


@pytest.mark.parametrize("client_id, response_type, fragment", [
    ("web", "code", False), ("implicit", "id_token token", True)])
def test_the_registration_parameter_is_refused_not_ignored(oauth, app, client_id, response_type, fragment):
    """OpenID Connect Core 7.2.1 defines `registration` for Self-Issued OPs only ("SHOULD NOT be
    used when the OP is not a Self-Issued OP"), and 3.1.2.6 the answer of an OP that does not
    support it: registration_not_supported, as request and request_uri are refused with their
    errors. Ignored, the client's metadata in it (its redirect URIs, keys, policy) was silently
    not applied and the request answered as if it were."""
    response = oauth.authorize(client_id=client_id, response_type=response_type, scope="openid",
                               nonce="n-registration", state="reg-1",
                               registration='{"redirect_uris": ["https://elsewhere.example.com/cb"]}')
    assert response.status_code == 302, response.status_code
    location = response.headers["Location"]
    assert ("#" in location) == fragment, location
    params = redirect_params(location)
    assert params.get("error") == "registration_not_supported", params
    assert params["state"] == "reg-1" and params["iss"] == "https://localhost", params
    assert "code" not in params and "id_token" not in params and "access_token" not in params, params
    assert _codes(app) == 0
