"""A client with require_verified_email: its sign-in completes only for a verified address; the
page in between offers the link; prompt=none gets interaction_required; the password grant refuses."""

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import csrf_token
from identity.extensions import db
from identity.models import Client, User

REDIRECT = "com.example.app:/callback"


@pytest.fixture
def strict(app, seeded):
    """mobile-pkce requires a verified address; alice's is not."""
    with app.app_context():
        for client_id in ("mobile-pkce", "mobile"):
            db.session.scalar(select(Client).where(Client.client_id == client_id)).require_verified_email = True
        db.session.commit()


def authorize(client, **extra):
    _, challenge = pkce_pair()
    return OAuthActions(client).authorize(client_id="mobile-pkce", scope="openid email", redirect_uri=REDIRECT,
                                          code_challenge=challenge, code_challenge_method="S256", **extra)


def test_sign_in_stops_at_the_verification_page_until_the_address_is_verified(app, client, strict, mail):
    start = authorize(client)
    return_url = parse_qs(urlsplit(start.headers["Location"]).query)["returnUrl"][0]
    signed_in = AuthActions(client).login(return_url=return_url)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == return_url  # back to the request, which decides
    required = client.get(return_url).headers["Location"]
    assert required.startswith("/account/email/required?returnUrl=")
    again = authorize(client)  # asked again: still stopped
    assert again.headers["Location"].startswith("/account/email/required")

    page = client.get(required)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Mobile App (code + PKCE)" in html
    assert "alice@example.com" in html
    sent = client.post(required, data={"csrf_token": csrf_token(html)})
    assert sent.status_code == 200
    assert "We sent a link" in sent.get_data(as_text=True)
    link = mail.link(mail.wait_for(to="alice@example.com"))
    assert client.get(urlsplit(link).path + "?" + urlsplit(link).query).status_code == 200

    resumed = client.get(parse_qs(urlsplit(required).query)["returnUrl"][0])
    assert resumed.status_code == 302
    params = redirect_params(resumed.headers["Location"])
    assert "code" in params, resumed.headers["Location"]


def test_prompt_none_gets_interaction_required(client, strict):
    AuthActions(client).login()
    response = authorize(client, prompt="none")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params["error"] == "interaction_required"


def test_other_clients_are_not_held_up(client, strict):
    AuthActions(client).login()
    token, params = OAuthActions(client).code_flow(client_id="spa", scope="openid", consent=True)
    assert token.status_code == 200


def test_a_verified_address_passes_straight_through(app, client, strict):
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).email_verified = True
        db.session.commit()
    AuthActions(client).login()
    response = authorize(client)
    assert response.status_code == 302
    assert "code" in redirect_params(response.headers["Location"])


def test_the_page_needs_a_sign_in(client, strict):
    response = client.get("/account/email/required?returnUrl=/connect/authorize")
    assert response.status_code == 302
    assert "/account/login" in response.headers["Location"]


def test_the_password_grant_refuses_an_unverified_address(app, client, flow_clients):
    with app.app_context():
        db.session.scalar(select(Client).where(Client.client_id == "legacy")).require_verified_email = True
        db.session.commit()
    oauth = OAuthActions(client)
    refused = oauth.token("legacy", grant_type="password", username="bob", password="marble-violet-canyon-482",
                          scope="openid")
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_grant"
    assert "verified" in refused.get_json()["error_description"]
    wrong = oauth.token("legacy", grant_type="password", username="bob", password="wrong-password-entirely",
                        scope="openid")
    assert "verified" not in wrong.get_json()["error_description"]  # only a right password learns it
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "bob")).email_verified = True
        db.session.commit()
    assert oauth.token("legacy", grant_type="password", username="bob", password="marble-violet-canyon-482",
                       scope="openid").status_code == 200


def test_the_consent_page_is_no_way_around_the_requirement(client, strict):
    """The consent page checks what the authorization endpoint checks: opening /consent with the
    pending request's parameters directly, and allowing, must not issue a code for an unverified
    address either."""
    from urllib.parse import urlencode

    AuthActions(client).login()
    oauth = OAuthActions(client)
    _, challenge = pkce_pair()
    params = oauth.authorize_params(client_id="mobile-pkce", scope="openid email", redirect_uri=REDIRECT,
                                    code_challenge=challenge, code_challenge_method="S256")
    direct = client.get("/connect/authorize?" + urlencode(params))
    assert "/account/email/required" in direct.headers["Location"]  # the authorization endpoint stops
    consent_url = "/consent?" + urlencode(params)
    page = client.get(consent_url)
    assert page.status_code == 302 and "/account/email/required" in page.headers["Location"], page.status_code
    token = csrf_token(client.get("/account/password").get_data(as_text=True))  # the session's CSRF token
    allowed = client.post(consent_url, data={"csrf_token": token, "decision": "allow"})
    assert allowed.status_code == 302
    assert "code" not in redirect_params(allowed.headers.get("Location", "")), allowed.headers.get("Location")
