"""The authorization endpoint's decisions as the browser sees them: where and how each answer travels,
the consent page's request checked as /connect/authorize checks it, and parameters carried intact."""

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from identity.extensions import db
from identity.models import AuthorizationCode


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _codes(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


def _spa_consent_location(oauth, **extra):
    response = oauth.authorize(client_id="spa", code_challenge=pkce_pair()[1], code_challenge_method="S256", **extra)
    assert response.status_code == 302 and response.headers["Location"].startswith("/consent?"), response.headers
    return response.headers["Location"]


@pytest.mark.parametrize("name", ["endpoint", "_anchor", "_external", "values"])
def test_unrecognized_parameters_ride_to_the_consent_page_intact(oauth, name):
    """They were keyword arguments to url_for: `endpoint` was a 500, `_anchor` a fragment."""
    location = _spa_consent_location(oauth, **{name: "kept"})
    parts = urlsplit(location)
    assert not parts.fragment and not parts.netloc
    assert dict(parse_qsl(parts.query))[name] == "kept"
    response = oauth.consent(location)
    assert "code" in redirect_params(response.headers["Location"])


def test_a_consent_url_with_a_repeated_parameter_is_refused_like_the_authorization_request(oauth, app):
    location = _spa_consent_location(oauth, state="first") + "&state=second"
    page = oauth.client.get(location)
    assert page.status_code == 302
    assert page.headers["Location"].startswith("http://127.0.0.1:8080/callback")
    assert redirect_params(page.headers["Location"])["error"] == "invalid_request"
    assert _codes(app) == 0


def test_an_error_travels_in_the_requested_form_post_mode(oauth, app):
    response = oauth.authorize(client_id="web", scope="openid admin", response_mode="form_post", state="fp1")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'action="https://web.example.com/cb"' in html
    assert 'name="error" value="invalid_scope"' in html and 'value="fp1"' in html
    assert "form-action https://web.example.com" in response.headers["Content-Security-Policy"]
    assert _codes(app) == 0


def test_a_refused_consent_travels_in_the_requested_mode(oauth):
    location = _spa_consent_location(oauth, response_mode="fragment", state="fr1")
    response = oauth.consent(location, decision="deny")
    parts = urlsplit(response.headers["Location"])
    params = dict(parse_qsl(parts.fragment))
    assert not parts.query and params["error"] == "access_denied" and params["state"] == "fr1"


def test_reordered_hybrid_response_type_answers_in_the_fragment(oauth):
    """Authlib sorts "id_token code" to "code id_token"; the response mode follows the same reading."""
    response = oauth.authorize(client_id="mobile", response_type="id_token code", scope="openid", nonce="n-7",
                               code_challenge=pkce_pair()[1], code_challenge_method="S256")
    parts = urlsplit(response.headers["Location"])
    assert parts.fragment and not parts.query
    assert {"code", "id_token", "state"} <= set(dict(parse_qsl(parts.fragment)))


def test_sign_in_page_names_no_disabled_client_and_lets_it_in_no_form_action(client, flow_clients, runner):
    """`clients disable` refuses the client everywhere, but the sign-in page a request of it
    reached still said "continue to Web App" and let its origin into form-action, as if the
    sign-in would lead there (the authorization itself is refused)."""
    assert runner.invoke(args=["clients", "disable", "web"]).exit_code == 0
    registered = "/connect/authorize?" + urlencode({"client_id": "web", "redirect_uri": "https://web.example.com/cb",
                                                    "response_type": "code", "scope": "openid"})
    page = client.get("/account/login?" + urlencode({"returnUrl": registered}))
    assert page.status_code == 200
    assert "Web App" not in page.get_data(as_text=True)
    assert "web.example.com" not in page.headers["Content-Security-Policy"]


def test_sign_in_page_names_the_pending_client_and_reaches_only_its_registered_redirect(client, flow_clients):
    registered = "/connect/authorize?" + urlencode({"client_id": "web", "redirect_uri": "https://web.example.com/cb",
                                                    "response_type": "code", "scope": "openid"})
    page = client.get("/account/login?" + urlencode({"returnUrl": registered}))
    assert "Web App" in page.get_data(as_text=True)
    assert re.search(r"form-action 'self' https://web\.example\.com", page.headers["Content-Security-Policy"])
