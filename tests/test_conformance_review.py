"""Review from outside: what the OpenID Foundation's conformance plans (Basic, Implicit, Hybrid,
Config OP) and OpenID Connect Core 1.0 / Discovery 1.0 require at the edges."""

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from actions import AuthActions, redirect_params
from identity.extensions import db
from test_authorization_decisions import _codes, oauth  # noqa: F401 (oauth: a fixture)


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


def _subject(app, username):
    from identity.models import User
    with app.app_context():
        return db.session.scalar(select(User.subject).where(User.username == username))


def _sub_claim(subject):
    import json
    return json.dumps({"id_token": {"sub": {"value": subject}}})


def test_a_sub_requested_by_value_in_claims_is_only_answered_for_that_user(oauth, app):
    """OpenID Connect Core 3.1.2.2: "If the sub (subject) Claim is requested with a specific value
    for the ID Token, the Authorization Server MUST only send a positive response if the End-User
    identified by that sub value has an active session ... or has been Authenticated as a result
    of the request." The rest of `claims` is not supported (claims_parameter_supported: false), but
    alice signed in was answered with her code for a request that named bob."""
    bob = _subject(app, "bob")
    silent = oauth.authorize(client_id="web", nonce="n-claims-1", state="c-1", prompt="none", claims=_sub_claim(bob))
    assert silent.status_code == 302, silent.status_code
    params = redirect_params(silent.headers["Location"])
    assert params.get("error") == "login_required" and params["state"] == "c-1", params
    asked = oauth.authorize(client_id="web", nonce="n-claims-2", state="c-2", claims=_sub_claim(bob))
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/account/login?"), \
        asked.headers.get("Location")
    assert _codes(app) == 0
    login = asked.headers["Location"]
    again = AuthActions(oauth.client).login(return_url=parse_qs(urlsplit(login).query)["returnUrl"][0])
    assert again.status_code == 303, again.status_code  # alice again: not the user the request names
    params = redirect_params(again.headers["Location"])
    assert params.get("error") == "login_required" and params["state"] == "c-2", params
    assert _codes(app) == 0
    own = oauth.authorize(client_id="web", nonce="n-claims-3", state="c-3", prompt="none",
                          claims=_sub_claim(_subject(app, "alice")))
    assert "code" in redirect_params(own.headers["Location"]), own.headers["Location"]
