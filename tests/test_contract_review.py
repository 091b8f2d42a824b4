"""The contract auditor's review: each test pins a statement of the public contract (or of the
docs that repeat it) that the running server did not keep."""

import pytest

from actions import AuthActions
from mfa_actions import step_clock  # noqa: F401  (the fixture)
from conftest import ALICE_PASSWORD
from identity.constants import PASSWORD_INPUT_MAX
from test_localapi_support import LocalApi, bearer


@pytest.fixture
def api(app, client, seeded):
    return LocalApi(app, client)


# --- the local API's 202 answers: no body, so no Content-Type ---------------------------------


def test_the_verification_mail_s_202_carries_no_content_type(api, mail):
    response = api.client.post("/localapi/email/verification", headers=bearer(api.token()))
    assert response.status_code == 202
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers  # not text/html, as an empty Flask answer is labelled
    mail.wait_for(to="alice@example.com")


def test_the_address_change_s_202_carries_no_content_type(api, mail):
    response = api.client.put("/localapi/email", headers=bearer(api.token()),
                              json={"email": "alice@example.org", "current_password": ALICE_PASSWORD})
    assert response.status_code == 202
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    mail.wait_for(to="alice@example.org")


# --- one password policy everywhere: PASSWORD_MAX_LENGTH beyond what the entry points take ------


@pytest.mark.parametrize("app_config", [{"PASSWORD_MAX_LENGTH": 1024}])
def test_the_longest_password_the_policy_allows_signs_in_on_the_page(app, client, seeded):
    """The contract: one policy everywhere (seed, CLI, page, local API). PASSWORD_MAX_LENGTH=2048
    started a server whose `users set-password` took a 1,100-character password that the sign-in
    page (and the local API, and the seed file) then refused as longer than 1,024; a maximum above
    PASSWORD_INPUT_MAX is now refused at start (tests/test_config.py)."""
    from identity.services import accounts

    longest = (" ".join(["orchid lantern velvet canyon harbor quartz tulip marble"] * 20))[:PASSWORD_INPUT_MAX]
    with app.app_context():
        accounts.set_password("alice", longest)  # what `users set-password` does
    response = AuthActions(client).login("alice", longest)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


# --- the mfa-required problem type is a URL under the issuer: it documents itself -------------


def test_the_mfa_required_problem_type_is_dereferenceable(app, client, flow_clients, step_clock):
    """RFC 9457 section 3.1.1: a problem type URI, when dereferenced, SHOULD give human-readable
    documentation. The local API's own type, `<issuer>/problems/mfa-required`, was a 404."""
    from urllib.parse import urlsplit

    from mfa_actions import enrol_user

    enrol_user(app)
    api = LocalApi(app, client)
    refused = api.change_password(api.token())
    assert refused.status_code == 403
    type_url = refused.get_json(force=True)["type"]
    assert type_url.endswith("/problems/mfa-required")

    page = client.get(urlsplit(type_url).path)
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "A second factor is required" in text
    assert "otp" in text and "acr_values=mfa" in text and "prompt=login" in text


# --- email_verified in ID tokens, as userinfo and /localapi/account report it ------------------


def test_an_id_token_of_the_code_flow_carries_email_verified(app, client, flow_clients):
    """The contract: a verified address is `email_verified` true "in ID tokens, userinfo,
    /localapi/account". Only the ID tokens of response_type=id_token carried it; the code flow's
    (and the hybrid flows') left it to userinfo."""
    import base64
    import json

    from actions import OAuthActions, redirect_params

    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid email").headers["Location"])["code"]
    tokens = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    payload = tokens.get_json()["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    userinfo = client.get("/connect/userinfo", headers={"Authorization": f"Bearer {tokens.get_json()['access_token']}"})

    assert claims.get("email_verified") is userinfo.get_json()["email_verified"], claims
    assert claims.get("email") == userinfo.get_json()["email"] == "alice@example.com"
    assert "preferred_username" not in claims  # the profile's claims stay in userinfo (Core 5.4)
