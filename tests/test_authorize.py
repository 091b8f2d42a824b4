"""The authorization endpoint: clients, redirect URIs, response types, PKCE, nonce, prompt, max_age, response modes."""

import re
import time
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import BOB_PASSWORD, HttpsClient
from statements import statements
from identity.extensions import db
from identity.models import AuthorizationCode, UserSession


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _authorize(client, **params):
    return client.get("/connect/authorize?" + urlencode(params))


def _codes(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


def test_code_flow_with_pkce_returns_code_and_state(oauth):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", code_challenge=challenge, code_challenge_method="S256", state="xyz")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("com.example.native:/cb?")
    params = redirect_params(location)
    assert params["state"] == "xyz" and len(params["code"]) >= 32


@pytest.mark.parametrize("params,reason", [
    ({"client_id": "nope"}, "unknown client"),
    ({"redirect_uri": "https://evil.example.com/cb"}, "unregistered redirect_uri"),
    ({"redirect_uri": "com.example.native:/cb/extra"}, "not an exact match"),
    ({"redirect_uri": None}, "missing redirect_uri"),
    ({"client_id": None}, "missing client_id"),
])
def test_bad_client_or_redirect_uri_shows_an_error_page_and_never_redirects(oauth, app, params, reason):
    base = oauth.authorize_params(client_id="native", code_challenge=pkce_pair()[1], code_challenge_method="S256")
    base.update(params)
    response = _authorize(oauth.client, **{k: v for k, v in base.items() if v is not None})
    assert response.status_code == 400, reason
    assert "Location" not in response.headers
    assert "text/html" in response.headers["Content-Type"]
    assert _codes(app) == 0


def test_loopback_redirect_uri_may_use_any_port(oauth):
    _, challenge = pkce_pair()
    response = _authorize(oauth.client, client_id="native", response_type="code", scope="openid",
                          redirect_uri="http://127.0.0.1:53123/callback", code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("http://127.0.0.1:53123/callback?code=")


def test_loopback_port_rule_does_not_apply_to_other_hosts(oauth):
    response = _authorize(oauth.client, client_id="web", response_type="code", scope="openid",
                          redirect_uri="https://web.example.com:8443/cb")
    assert response.status_code == 400


def test_public_client_without_pkce_gets_invalid_request_at_its_redirect(oauth, app):
    response = oauth.authorize(client_id="native", state="s1")
    params = redirect_params(response.headers["Location"])
    assert params["error"] == "invalid_request" and params["state"] == "s1"
    assert _codes(app) == 0


def test_require_pkce_client_without_challenge_is_refused(oauth):
    response = oauth.authorize(client_id="mobile", response_type="code id_token", nonce="n", scope="openid")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["plain", None, "S512"])
def test_only_s256_is_accepted(oauth, method):
    params = {"code_challenge": "a" * 43}
    if method:
        params["code_challenge_method"] = method
    response = oauth.authorize(client_id="native", **params)
    assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


def test_confidential_client_without_require_pkce_may_skip_it(oauth):
    response = oauth.authorize(client_id="web")
    assert "code" in redirect_params(response.headers["Location"])


@pytest.mark.parametrize("client_id,response_type,allowed", [
    ("web", "code", True),
    ("web", "code id_token", False),
    ("web", "id_token", False),
    ("mobile", "code id_token", True),
    ("mobile", "code token", True),
    ("mobile", "code id_token token", True),
    ("mobile", "code", False),  # hybrid allows only the three hybrid types, as in IdentityServer4
    ("mobile", "id_token", False),
    ("implicit", "id_token", True),
    ("implicit", "id_token token", True),
    ("implicit", "code", False),
])
def test_response_types_follow_the_clients_grant_types(oauth, client_id, response_type, allowed):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id=client_id, response_type=response_type, nonce="n-1", scope="openid",
                               code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    if allowed:
        assert "error" not in params, params
    else:
        assert params["error"] in ("unauthorized_client", "unsupported_response_type")


def test_access_token_through_browser_needs_allow_access_tokens_via_browser(oauth, app):
    with app.app_context():
        from identity.services.clients import get_client

        get_client("mobile").allow_access_tokens_via_browser = False
        db.session.commit()
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", response_type="code token", scope="openid",
                               code_challenge=challenge, code_challenge_method="S256")
    assert redirect_params(response.headers["Location"])["error"] == "unauthorized_client"


@pytest.mark.parametrize("client_id,response_type", [("implicit", "id_token"), ("implicit", "id_token token"),
                                                     ("mobile", "code id_token"), ("mobile", "code id_token token")])
def test_nonce_is_required_when_an_id_token_comes_from_the_authorization_endpoint(oauth, client_id, response_type):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id=client_id, response_type=response_type, scope="openid",
                               code_challenge=challenge, code_challenge_method="S256")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


def test_code_token_does_not_need_a_nonce(oauth):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile", response_type="code token", scope="openid",
                               code_challenge=challenge, code_challenge_method="S256")
    params = redirect_params(response.headers["Location"])
    assert "code" in params and "access_token" in params and "id_token" not in params


def test_hybrid_and_implicit_answer_in_the_fragment(oauth):
    response = oauth.authorize(client_id="implicit", response_type="id_token token", scope="openid profile", nonce="n2")
    location = response.headers["Location"]
    assert urlsplit(location).fragment and not urlsplit(location).query
    params = redirect_params(location)
    assert {"id_token", "access_token", "token_type", "expires_in", "state"} <= set(params)


def test_response_mode_query_is_refused_when_tokens_are_returned(oauth):
    response = oauth.authorize(client_id="implicit", response_type="id_token", scope="openid", nonce="n", response_mode="query")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


def test_response_mode_fragment_for_code(oauth):
    response = oauth.authorize(client_id="web", response_mode="fragment")
    assert urlsplit(response.headers["Location"]).fragment.startswith("code=")


def test_response_mode_form_post_renders_an_auto_submitting_page(oauth):
    response = oauth.authorize(client_id="web", response_mode="form_post", state="st8")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'action="https://web.example.com/cb"' in html
    assert re.search(r'name="code" value="[^"]+"', html) and 'value="st8"' in html
    assert "form_post.js" in html and "<script>" not in html
    assert "form-action https://web.example.com" in response.headers["Content-Security-Policy"]


def test_unknown_response_mode_is_refused(oauth):
    response = oauth.authorize(client_id="web", response_mode="carrier-pigeon")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


def test_scope_not_allowed_for_client_is_invalid_scope(oauth):
    response = oauth.authorize(client_id="web", scope="openid admin")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_scope"


def test_offline_access_needs_allow_offline_access(oauth):
    response = oauth.authorize(client_id="spa", nonce="n", scope="openid offline_access", code_challenge="x" * 43,
                               code_challenge_method="S256")
    assert redirect_params(response.headers["Location"])["error"] == "invalid_scope"


@pytest.mark.parametrize("response_type", ["id_token", "id_token token"])
def test_offline_access_is_ignored_when_no_code_is_returned(oauth, response_type):
    """OpenID Connect Core 11: the OP "MUST ignore the offline_access request unless the Client is
    using a response_type value that would result in an Authorization Code being returned"."""
    response = oauth.authorize(client_id="implicit", response_type=response_type, nonce="n-off",
                               scope="openid offline_access")
    params = redirect_params(response.headers["Location"])
    assert "error" not in params and "id_token" in params, params
    if "token" in response_type.split():
        assert params["scope"] == "openid"
        assert jwt.decode(params["access_token"], options={"verify_signature": False})["scope"] == "openid"


def test_not_signed_in_goes_to_login_and_back(client, flow_clients):
    oauth = OAuthActions(client)
    response = oauth.authorize(client_id="web")
    assert response.status_code == 302 and response.headers["Location"].startswith("/account/login?returnUrl=")
    login = AuthActions(client).login(return_url=unquote(response.headers["Location"].split("returnUrl=", 1)[1]))
    # no consent needed: the sign-in answers the request itself (tests/test_sign_in_resumes.py)
    assert login.headers["Location"].startswith("https://web.example.com/cb?")
    assert "code" in redirect_params(login.headers["Location"])


def test_prompt_none_without_session_returns_login_required(client, flow_clients):
    response = OAuthActions(client).authorize(client_id="web", prompt="none", state="pn")
    params = redirect_params(response.headers["Location"])
    assert params["error"] == "login_required" and params["state"] == "pn"


def test_prompt_none_when_consent_is_missing_returns_consent_required(oauth):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="spa", prompt="none", code_challenge=challenge, code_challenge_method="S256")
    assert redirect_params(response.headers["Location"])["error"] == "consent_required"


def test_prompt_none_with_session_issues_silently(oauth):
    response = oauth.authorize(client_id="web", prompt="none")
    assert "code" in redirect_params(response.headers["Location"])


def test_prompt_login_forces_a_new_sign_in_once(oauth):
    response = oauth.authorize(client_id="web", prompt="login")
    location = response.headers["Location"]
    assert location.startswith("/account/login")
    assert "prompt%3Dlogin" not in location  # the return trip does not ask again


def test_max_age_forces_sign_in_when_the_session_is_older(oauth, app):
    with app.app_context():
        db.session.execute(UserSession.__table__.update().values(auth_time=int(time.time()) - 600))
        db.session.commit()
    assert oauth.authorize(client_id="web", max_age="60").headers["Location"].startswith("/account/login")
    assert "code" in redirect_params(oauth.authorize(client_id="web", max_age="3600").headers["Location"])


def test_duplicate_parameters_are_refused(oauth):
    response = oauth.client.get("/connect/authorize?" + urlencode(oauth.authorize_params(client_id="web")) + "&state=second")
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert redirect_params(response.headers["Location"])["error"] == "invalid_request"


def test_authorize_accepts_post(oauth):
    response = oauth.client.post("/connect/authorize", data=oauth.authorize_params(client_id="web"))
    assert "code" in redirect_params(response.headers["Location"])


def test_unsupported_response_type_with_registered_redirect_is_reported_to_the_client(oauth):
    response = oauth.authorize(client_id="web", response_type="token")
    assert redirect_params(response.headers["Location"])["error"] == "unsupported_response_type"


@pytest.mark.parametrize("app_config", [{"GRANT_TYPES_ENABLED": ["hybrid", "refresh_token"]}])
def test_response_type_code_is_not_served_while_the_authorization_code_grant_is_off(oauth, app):
    """The code grant stays registered to redeem hybrid codes, but discovery does not list `code`
    as a response type then, and the authorization endpoint must not serve it either."""
    response = oauth.authorize(client_id="web")
    assert redirect_params(response.headers["Location"])["error"] == "unsupported_response_type"
    assert _codes(app) == 0
    verifier, challenge = pkce_pair()
    hybrid = oauth.authorize(client_id="mobile", response_type="code id_token", nonce="n-1",
                             code_challenge=challenge, code_challenge_method="S256")
    code = redirect_params(hybrid.headers["Location"])["code"]
    redeemed = oauth.token("mobile", grant_type="authorization_code", code=code, redirect_uri="com.example.app:/callback",
                           code_verifier=verifier)
    assert redeemed.status_code == 200 and "id_token" in redeemed.get_json()


def test_login_and_consent_pages_let_their_form_reach_the_client(client, flow_clients):
    location = OAuthActions(client).authorize(client_id="spa", code_challenge=pkce_pair()[1],
                                              code_challenge_method="S256").headers["Location"]
    csp = client.get(location).headers["Content-Security-Policy"]
    assert "form-action 'self' http://127.0.0.1:8080" in csp
    AuthActions(client).login()
    consent_location = OAuthActions(client).authorize(client_id="spa", code_challenge=pkce_pair()[1],
                                                      code_challenge_method="S256").headers["Location"]
    assert "form-action 'self' http://127.0.0.1:8080" in client.get(consent_location).headers["Content-Security-Policy"]
    assert client.get("/account/login").headers["Content-Security-Policy"].endswith("form-action 'self'")


def test_login_page_ignores_unregistered_redirect_for_form_action(client, flow_clients):
    return_url = "/connect/authorize?" + urlencode({"client_id": "spa", "redirect_uri": "https://evil.example.com/"})
    csp = client.get("/account/login?" + urlencode({"returnUrl": return_url})).headers["Content-Security-Policy"]
    assert "evil" not in csp


def test_a_nonce_already_carried_by_another_users_live_code_is_refused_as_a_replay(oauth, app):
    """OpenID Connect Core 3.1.2.2: the nonce guards against replays, so a code request whose
    nonce an unexpired code of the same client already carries for another user is refused (a
    sign-in made with a nonce taken from someone else's request, to be injected into theirs).
    The same user's request again (a double-submitted sign-in) is answered; another client's
    code with that nonce does not count; the check is one read on the autocommit connection."""
    def code_request(actions, client_id: str, nonce: str):
        return actions.authorize(client_id=client_id, scope="openid", nonce=nonce,
                                 code_challenge=pkce_pair()[1], code_challenge_method="S256")

    first = redirect_params(code_request(oauth, "native", "n-replayed").headers["Location"])
    assert "code" in first and _codes(app) == 1
    same_user = redirect_params(code_request(oauth, "native", "n-replayed").headers["Location"])
    assert "code" in same_user and _codes(app) == 2

    app.test_client_class = HttpsClient
    bob = app.test_client()
    assert AuthActions(bob).login("bob", BOB_PASSWORD).status_code == 302
    with statements(app) as run:
        again = redirect_params(code_request(OAuthActions(bob), "native", "n-replayed").headers["Location"])
    assert again["error"] == "invalid_request" and "code" not in again
    assert _codes(app) == 2
    assert not [sql for sql in run.pooled if "authorization_codes" in sql], run.pooled
    assert run.autocommit >= 1
    other_client = redirect_params(code_request(OAuthActions(bob), "web", "n-replayed").headers["Location"])
    assert "code" in other_client and _codes(app) == 3


# --- OpenID Connect Core 3.1.2.1 and 6: prompt, max_age, id_token_hint, request objects ---------


def test_max_age_zero_asks_for_a_new_sign_in_once(oauth):
    """max_age=0 is prompt=login (Core 3.1.2.1): asked whatever the session's age, and dropped
    from the request the sign-in resumes, so it is not asked again."""
    location = oauth.authorize(client_id="web", max_age="0").headers["Location"]
    assert location.startswith("/account/login"), location
    assert "max_age" not in unquote(location)


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "99999999999"])
def test_a_max_age_that_is_not_a_number_of_seconds_is_refused_not_ignored(oauth, app, value):
    params = redirect_params(oauth.authorize(client_id="web", max_age=value).headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params, params
    assert _codes(app) == 0


@pytest.mark.parametrize("name", ["max_age", "request", "request_uri", "id_token_hint", "response_mode"])
def test_a_parameter_sent_without_a_value_is_as_if_omitted(oauth, name):
    """RFC 6749 section 3.1."""
    assert "code" in redirect_params(oauth.authorize(client_id="web", **{name: ""}).headers["Location"])


def test_an_empty_response_mode_is_the_response_types_default(oauth):
    """RFC 6749 section 3.1: response_mode sent without a value is as if omitted, also for the
    response types that answer in the fragment."""
    response = oauth.authorize(client_id="implicit", response_type="id_token", scope="openid", nonce="n-rm",
                               response_mode="")
    assert response.headers["Location"].startswith("https://implicit.example.com/cb#id_token="), response.headers["Location"]


def test_prompt_select_account_goes_through_the_sign_in_page_once(oauth):
    """The sign-in page is where a person picks the account: select_account is asked there, not ignored."""
    location = oauth.authorize(client_id="web", prompt="select_account").headers["Location"]
    assert location.startswith("/account/login"), location
    assert "select_account" not in unquote(location)
    signed_out = OAuthActions(oauth.client.application.test_client())
    refused = signed_out.authorize(client_id="web", prompt="none select_account")
    assert redirect_params(refused.headers["Location"])["error"] == "invalid_request"  # none stands alone


def test_prompt_consent_asks_even_a_client_without_require_consent(oauth, app):
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="mobile-pkce", redirect_uri="com.example.app:/callback", prompt="consent",
                               code_challenge=challenge, code_challenge_method="S256")
    location = response.headers["Location"]
    assert location.startswith("/consent?") and "prompt" not in unquote(location), location
    assert _codes(app) == 0
    allowed = oauth.consent(location, decision="allow")
    assert "code" in redirect_params(allowed.headers["Location"])


def _id_token(oauth):
    token, _ = oauth.code_flow(client_id="web", scope="openid profile")
    return token.get_json()["id_token"]


def test_an_id_token_hint_of_another_user_is_not_answered_for_the_signed_in_one(oauth, client):
    from conftest import BOB_PASSWORD

    alice_hint = _id_token(oauth)
    AuthActions(client).logout()
    AuthActions(client).login(username="bob", password=BOB_PASSWORD)
    silent = oauth.authorize(client_id="web", prompt="none", id_token_hint=alice_hint)
    assert redirect_params(silent.headers["Location"]).get("error") == "login_required"
    asked = oauth.authorize(client_id="web", id_token_hint=alice_hint)
    assert asked.headers["Location"].startswith("/account/login")  # sign in as the user it names
    bob_hint = _id_token(oauth)
    assert "code" in redirect_params(oauth.authorize(client_id="web", prompt="none", id_token_hint=bob_hint).headers["Location"])
    # signing in there as the user the hint names answers the request (the sign-in resumes it)
    return_url = parse_qs(urlsplit(asked.headers["Location"]).query)["returnUrl"][0]
    answered = AuthActions(client).login(return_url=return_url)
    assert answered.headers["Location"].startswith("https://web.example.com/cb?"), answered.headers["Location"]
    assert "code" in redirect_params(answered.headers["Location"])


def test_an_id_token_hint_this_server_did_not_issue_is_invalid_request(oauth):
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    params = redirect_params(oauth.authorize(client_id="web", id_token_hint=forged).headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params, params


@pytest.mark.parametrize("name, value, error", [
    ("request", "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9.", "request_not_supported"),
    ("request_uri", "https://web.example.com/request.jwt", "request_uri_not_supported"),
])
def test_request_objects_are_refused_not_ignored(oauth, app, name, value, error):
    """Core 6.1, 6.2: an OP that does not take request objects MUST refuse them (discovery says
    request_parameter_supported: false), not answer the unsigned parameters beside them."""
    params = redirect_params(oauth.authorize(client_id="web", **{name: value}).headers["Location"])
    assert params.get("error") == error and "code" not in params, params
    assert _codes(app) == 0


@pytest.mark.parametrize("prompt", ["create", "login create", "LOGIN"])
def test_a_prompt_value_discovery_does_not_list_is_refused_not_ignored(oauth, app, prompt):
    """Initiating User Registration via OpenID Connect 1.0, 4.1: an OP that receives a prompt value
    it does not support (not in prompt_values_supported) SHOULD answer invalid_request, naming
    it. Ignored, `prompt=create` (the client's "Create an account" button) was answered at once
    with a code for the user already signed in, which the client took for a new account."""
    response = oauth.authorize(client_id="web", prompt=prompt, state="st-create")
    assert response.status_code == 302, response.status_code
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params, params
    assert params["state"] == "st-create" and prompt.split()[-1] in params["error_description"], params
    signed_out = OAuthActions(oauth.client.application.test_client()).authorize(client_id="web", prompt=prompt)
    assert redirect_params(signed_out.headers["Location"]).get("error") == "invalid_request"  # no sign-in page first
    assert _codes(app) == 0


@pytest.mark.parametrize("extra, error", [
    ({"request": "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."}, "request_not_supported"),
    ({"request_uri": "https://web.example.com/request.jwt"}, "request_uri_not_supported"),
    ({"registration": '{"redirect_uris": ["https://elsewhere.example.com/cb"]}'}, "registration_not_supported"),
    ({"max_age": "soon"}, "invalid_request"),
    ({"id_token_hint": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, "invalid_request"),
    ({"prompt": "none create"}, "invalid_request"),
])
def test_prompt_none_signed_out_is_refused_as_signed_in_for_what_the_request_itself_gets_wrong(
        client, flow_clients, app, extra, error):
    """The authorization endpoint's checks apply to every request alike: signed out, prompt=none
    was answered login_required by Authlib before this server's own checks (request objects,
    registration, max_age, id_token_hint) ran, so a silent sign-in with a request this server
    refuses sent the client to an interactive sign-in, and the person typed a password for a
    request refused afterwards."""
    signed_out = OAuthActions(client)
    response = signed_out.authorize(client_id="web", prompt=extra.pop("prompt", "none"), state="st-none", **extra)
    assert response.status_code == 302, response.status_code
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == error and params["state"] == "st-none", params
    assert params["iss"] == "https://localhost", params
    assert _codes(app) == 0
    still = redirect_params(signed_out.authorize(client_id="web", prompt="none").headers["Location"])
    assert still.get("error") == "login_required", still  # a valid request: nobody to answer it for


@pytest.mark.parametrize("scope", ["openid admin", "openid"])
def test_form_post_to_a_redirect_uri_no_browser_can_post_to_answers_by_redirect(oauth, app, scope):
    """form_post needs an http or https redirect URI (Authlib refuses it for another); an error to
    such a URI is redirected as the response type's default mode says (RFC 6749 section 4.1.2.1),
    never an auto-submitting page posting to a private-use scheme, where the person would wait
    forever and the app never learn."""
    _, challenge = pkce_pair()
    response = oauth.authorize(client_id="native", response_mode="form_post", scope=scope, state="fp-native",
                               code_challenge=challenge, code_challenge_method="S256")
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"].startswith("com.example.native:/cb?")
    params = redirect_params(response.headers["Location"])
    assert params["error"] == ("invalid_scope" if scope == "openid admin" else "invalid_request")
    assert params["state"] == "fp-native"
    assert _codes(app) == 0


@pytest.mark.parametrize("response_type, error", [(None, "invalid_request"), ("bogus", "unsupported_response_type")])
def test_a_missing_or_unknown_response_type_is_answered_in_the_query(oauth, response_type, error):
    """RFC 6749 4.1.2.1: a missing required parameter is invalid_request; an error about a
    response type that carries no token goes back in the query, as for the code flow. A missing
    response_type was answered unsupported_response_type, in the fragment."""
    params = {"client_id": "web", "redirect_uri": "https://web.example.com/cb", "scope": "openid", "state": "st-rt"}
    if response_type:
        params["response_type"] = response_type
    location = oauth.client.get("/connect/authorize?" + urlencode(params)).headers["Location"]
    parts = urlsplit(location)
    assert parts.fragment == "" and (parts.scheme, parts.netloc, parts.path) == ("https", "web.example.com", "/cb")
    answer = dict(parse_qs(parts.query))
    assert answer["error"] == [error] and answer["state"] == ["st-rt"], answer
