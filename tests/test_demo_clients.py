"""The demo clients do what docs/demo-clients.md promises, and the table there is the seed's.

The table is rendered from demo/seed.json here and must appear verbatim in the document, so a
changed seed fails this test until the document is regenerated:
`.venv/bin/python tests/test_demo_clients.py` prints the table to paste.
"""

import base64
import json
import sys
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "demo" / "seed.json"
DOC_PATH = ROOT / "docs" / "demo-clients.md"
HYBRID_TYPES = ("code id_token", "code token", "code id_token token")


def _code(value: str) -> str:
    return f"`{value}`"


def _flows(client: dict) -> str:
    public = not client.get("client_secrets")
    pkce = " + PKCE (S256)" if public or client.get("require_pkce", True) else ""
    flows = []
    for grant in client["allowed_grant_types"]:
        if grant == "authorization_code":
            flows.append(f"authorization code (`code`){pkce}")
        elif grant == "hybrid":
            flows.append("hybrid (" + ", ".join(_code(t) for t in HYBRID_TYPES) + f"){pkce}")
        elif grant == "implicit":
            flows.append("implicit (`id_token`, `id_token token`)")
        elif grant == "client_credentials":
            flows.append("client credentials")
        elif grant == "password":
            flows.append("resource owner password")
    if client.get("allow_offline_access"):
        flows.append("refresh tokens (scope `offline_access`)")
    return "; ".join(flows)


def _scopes(client: dict) -> list[str]:
    scopes = list(client.get("allowed_scopes", []))
    if client.get("allow_offline_access") and "offline_access" not in scopes:
        scopes.append("offline_access")
    return scopes


def render_table(seed: dict) -> str:
    """One row per client: what a newcomer needs to try it (id, secret, type, flows, redirect URIs, scopes)."""
    lines = ["| client id | secret | type | flows | redirect URIs | scopes | consent |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for client in seed["clients"]:
        secrets = client.get("client_secrets", [])
        kind = "confidential" if secrets else "public"
        cells = [
            _code(client["client_id"]),
            ", ".join(_code(s) for s in secrets) or "none",
            kind,
            _flows(client),
            ", ".join(_code(u) for u in client.get("redirect_uris", [])) or "none",
            " ".join(_scopes(client)),
            "asked" if client.get("require_consent") else "not asked",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def demo_seed() -> dict:
    return json.loads(SEED_PATH.read_text(encoding="utf-8"))


# --- the document ---------------------------------------------------------------------


def test_the_document_holds_the_table_rendered_from_the_seed():
    table = render_table(demo_seed())
    document = DOC_PATH.read_text(encoding="utf-8")

    assert table in document, ("docs/demo-clients.md does not match demo/seed.json; regenerate the table with "
                               "`.venv/bin/python tests/test_demo_clients.py`:\n" + table)


def test_the_document_names_every_demo_user_with_the_seeds_password():
    document = DOC_PATH.read_text(encoding="utf-8")

    for user in demo_seed()["users"]:
        assert f"`{user['username']}`" in document and f"`{user['password']}`" in document


def test_the_seed_offers_code_with_pkce_and_hybrid_on_separate_clients():
    """IdentityServer4 refuses authorization_code with hybrid on one client, so each has its own."""
    grants = {c["client_id"]: set(c["allowed_grant_types"]) for c in demo_seed()["clients"]}

    assert "hybrid" in grants["mobile"]
    assert "authorization_code" in grants["mobile-pkce"]


# --- every promised flow works on the demo seed -------------------------------------------


@pytest.fixture
def oauth(client, seeded):
    from actions import AuthActions, OAuthActions

    assert AuthActions(client).login().status_code == 302
    actions = OAuthActions(client)
    actions.REDIRECTS = {**OAuthActions.REDIRECTS, "mobile-pkce": "com.example.app:/callback"}
    return actions


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("redirect_uri", ["com.example.app:/callback", "http://127.0.0.1:53124/callback"])
def test_mobile_pkce_signs_in_with_code_and_pkce_and_calls_the_local_api(oauth, client, redirect_uri):
    oauth.REDIRECTS["mobile-pkce"] = redirect_uri

    token, params = oauth.code_flow("mobile-pkce", scope="openid profile offline_access IdentityServerApi",
                                    redirect_uri=redirect_uri)

    assert token.status_code == 200, token.get_data(as_text=True)
    body = token.get_json()
    assert {"access_token", "id_token", "refresh_token"} <= set(body)
    assert _claims(body["access_token"])["client_id"] == "mobile-pkce"
    account = client.get("/localapi/account", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert account.status_code == 200 and account.get_json()["username"] == "alice"
    refreshed = oauth.token("mobile-pkce", grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200 and "access_token" in refreshed.get_json()


def test_mobile_pkce_without_a_verifier_is_refused(oauth):
    from actions import pkce_pair, redirect_params

    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile-pkce", scope="openid", code_challenge=challenge,
                               code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]

    token = oauth.token("mobile-pkce", grant_type="authorization_code", code=code,
                        redirect_uri="com.example.app:/callback")

    assert token.status_code == 400 and token.get_json()["error"] == "invalid_request"  # Authlib: missing code_verifier


def test_mobile_signs_in_with_hybrid_and_its_secret(oauth):
    token, params = oauth.code_flow("mobile", scope="openid IdentityServerApi offline_access",
                                    response_type="code id_token", nonce="n-1")

    assert "id_token" in params and _claims(params["id_token"])["nonce"] == "n-1"
    assert token.status_code == 200, token.get_data(as_text=True)
    assert {"access_token", "refresh_token"} <= set(token.get_json())


def test_mobile_refuses_plain_code_as_the_table_says(oauth):
    from actions import pkce_pair, redirect_params

    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", scope="openid", code_challenge=challenge,
                               code_challenge_method="S256")

    assert redirect_params(response.headers["Location"])["error"] == "unauthorized_client"


def test_spa_signs_in_with_code_pkce_and_consent(oauth):
    token, _ = oauth.code_flow("spa", scope="openid profile IdentityServerApi")

    assert token.status_code == 200, token.get_data(as_text=True)
    assert "refresh_token" not in token.get_json()


def test_service_gets_a_token_with_its_secret(client, seeded):
    service = next(c for c in seeded["clients"] if c["client_id"] == "service")
    basic = base64.b64encode(f"service:{service['client_secrets'][0]}".encode()).decode()

    response = client.post("/connect/token", data={"grant_type": "client_credentials", "scope": "IdentityServerApi"},
                           headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert _claims(response.get_json()["access_token"])["scope"] == "IdentityServerApi"


def test_the_seed_users_pass_the_password_policy(app, seeded):
    from identity.services.password_policy import password_problems

    with app.app_context():
        for user in seeded["users"]:
            assert password_problems(user["password"], username=user["username"], email=user["email"],
                                     name=user["name"]) == []


if __name__ == "__main__":
    sys.stdout.write(render_table(demo_seed()))
