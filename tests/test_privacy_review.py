"""The privacy and logging review: what the server tells about a user, and to whom."""

import base64

from actions import AuthActions, OAuthActions

WEB_BASIC = {"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()}


def _introspect(client, token: str) -> dict:
    response = client.post("/connect/introspect", data={"token": token}, headers=WEB_BASIC)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_introspection_names_the_user_only_with_the_profile_scope(client, flow_clients):
    """The user name is a claim of the profile scope (the consent page: "Your profile (name and
    user name)"); a client the user let have only their identifier does not learn it by
    introspecting its own access token."""
    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    identifier_only, _ = oauth.code_flow("web", scope="openid IdentityServerApi")
    with_profile, _ = oauth.code_flow("web", scope="openid profile")

    body = _introspect(client, identifier_only.get_json()["access_token"])
    assert body["active"] is True and body["sub"]
    assert "username" not in body, body
    assert _introspect(client, with_profile.get_json()["access_token"])["username"] == "alice"
