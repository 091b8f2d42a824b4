"""Inputs a grammar-driven fuzzer of every route found to give a 500 or a traceback; each case is
a table row, so a new finding is one more row. In-process through the test client, but for the
Host header, whose failure escaped every layer and is checked against a real server as well."""

import json
import logging

import pytest

from actions import AuthActions
from conftest import csrf_token
from test_localapi_support import CHEAP_ARGON2


@pytest.fixture
def app_config():
    return {**CHEAP_ARGON2, "LOCKOUT_MAX_FAILURES": 10**6}


@pytest.fixture
def errors_logged(caplog):
    caplog.set_level(logging.ERROR)
    return caplog


def assert_handled(response, caplog, case):
    assert response.status_code < 500, (case, response.status_code, response.get_data()[:200])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], (case, caplog.text[-500:])


# --- a page's form posted as JSON ------------------------------------------------------------

# Flask-WTF reads a JSON body as the form (ImmutableMultiDict(request.get_json())): a body that is
# not an object, or a field that is a number, list or object, raised in the form or its filters.
JSON_BODIES = [b"1", b'"x"', b"true", b"[]",
               json.dumps({name: 1 for name in ("username", "password", "new_password", "confirm_password",
                                                "current_password", "token", "code", "otp", "email")}).encode(),
               json.dumps({"username": {"a": 1}, "password": [[1]], "token": None}).encode()]
PAGES = ["/account/login", "/account/forgot-password", "/account/reset-password", "/account/logout",
         "/account/password", "/account/mfa", "/account/email", "/account/sessions", "/account/grants/revoke",
         "/consent", "/account/login/mfa", "/connect/endsession"]


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("path", PAGES)
def test_a_page_form_posted_as_json_is_no_500(client, seeded, errors_logged, path, signed_in):
    if signed_in:
        AuthActions(client).login()
    csrf = csrf_token(client.get("/account/password" if signed_in else "/account/login").get_data(as_text=True))
    for body in JSON_BODIES:
        errors_logged.clear()
        response = client.post(path, data=body, content_type="application/json", headers={"X-CSRFToken": csrf})
        assert_handled(response, errors_logged, (path, body))


def test_a_sign_in_posted_as_json_signs_nobody_in(client, seeded):
    """Pages take their forms' own encoding only: the same fields as JSON are no sign-in."""
    csrf = csrf_token(client.get("/account/login").get_data(as_text=True))
    response = client.post("/account/login", json={"username": "alice", "password": "tulip-quartz-harbor-917"},
                           headers={"X-CSRFToken": csrf})
    assert response.status_code != 302
    assert client.get("/account/password").status_code == 302  # still signed out: sent to the sign-in page


# --- a passkey id past the database's integers -----------------------------------------------

@pytest.mark.parametrize("passkey_id", ["2147483648", "9223372036854775808", "9" * 30])
def test_removing_a_passkey_by_an_id_past_the_integers_is_404(app, client, seeded, errors_logged, passkey_id):
    """The route's <int:> took any number of digits; SQLite cannot bind one past 64 bits and
    PostgreSQL's integer column refuses one past 32 bits."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import Passkey
    from test_passkeys_web import passkey_sign_in, register_over_http, token
    from webauthn_keys import SoftKey

    auth, key = AuthActions(client), SoftKey()
    auth.login()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    assert passkey_sign_in(client, key)[0].status_code == 302  # a sign-in with the factor: may remove one
    response = client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": token(client, "/account/mfa")})
    assert response.status_code == 404
    assert_handled(response, errors_logged, passkey_id)
    with app.app_context():
        assert len(db.session.scalars(select(Passkey)).all()) == 1


# --- a Host header no URL can be built on ----------------------------------------------------

# Werkzeug binds the routes to the host's IDNA form (BadHost when there is none: a label over 63
# characters, an empty label) and decodes a Punycode label in request.host_url; the error page
# then failed in url_for, past every layer (the server's bare 500, a traceback in the log).
UNBOUND_HOSTS = ["a" * 64, ".", "a..b"]
BAD_HOSTS = UNBOUND_HOSTS + ["xn--zz", "a.xn--a"]  # the test client itself fails on the last two: a socket only
# each path's own error shape: OAuth JSON, problem+json, a page
HOST_PATHS = {"/healthz": "text/html", "/account/login": "text/html", "/nowhere": "text/html",
              "/.well-known/openid-configuration": "application/json", "/connect/token": "application/json",
              "/localapi/account": "application/problem+json"}


@pytest.mark.parametrize("host", UNBOUND_HOSTS)
def test_a_host_that_names_no_host_is_a_400(client, seeded, errors_logged, host):
    for path, mimetype in HOST_PATHS.items():
        errors_logged.clear()
        response = client.get(path, environ_overrides={"HTTP_HOST": host})
        assert response.status_code == 400, (host, path, response.status_code)
        assert response.mimetype == mimetype, (host, path, response.mimetype)
        assert response.headers["X-Content-Type-Options"] == "nosniff"  # the headers layer answered it
        assert_handled(response, errors_logged, (host, path))
    assert client.post("/connect/token", environ_overrides={"HTTP_HOST": host}).get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "TRUST_PROXY_HOPS": 1}])
def test_a_forwarded_host_that_names_no_host_is_a_400(client, seeded, errors_logged):
    response = client.get("/account/login", headers={"X-Forwarded-Host": "a..b"})
    assert response.status_code == 400
    assert_handled(response, errors_logged, "X-Forwarded-Host")


def test_a_host_that_names_no_host_is_a_400_over_a_socket(live_server, seeded, errors_logged):
    import socket

    for host in BAD_HOSTS:
        for path in ("/healthz", "/account/login", "/.well-known/openid-configuration"):
            with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.split()[1] == b"400", (host, path, status_line)
            assert b"\r\nX-Content-Type-Options: nosniff\r\n" in rest, (host, path)
    assert not [r for r in errors_logged.records if r.levelno >= logging.ERROR or r.exc_info], errors_logged.text[-500:]


@pytest.mark.parametrize("host", ["localhost", "localhost:8443", "id.example.com", "127.0.0.1:5000", "[::1]:8080",
                                  "xn--bcher-kva.example"])
def test_a_host_that_names_a_host_is_served(client, seeded, host):
    assert client.get("/healthz", environ_overrides={"HTTP_HOST": host}).status_code == 200


# --- a passkey assertion with a field that is not base64url ----------------------------------

@pytest.mark.parametrize("field", ["rawId", "response.clientDataJSON", "response.authenticatorData", "response.signature"])
@pytest.mark.parametrize("value", ["\ud800", "caf\u00e9"])
def test_a_passkey_sign_in_with_a_non_ascii_field_is_refused_not_a_500(client, seeded, errors_logged, field, value):
    """py_webauthn wraps the decoding's ValueError in InvalidAuthenticationResponse, which the
    parse did not catch ("\\ud800" is the JSON escape, as a page's script could send it)."""
    from test_passkeys_web import ORIGIN, RP_ID, token
    from webauthn_keys import SoftKey

    csrf = token(client, "/account/login")
    challenge = client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    credential = json.loads(SoftKey().assertion(challenge, origin=ORIGIN, rp_id=RP_ID))
    *parents, name = field.split(".")
    target = credential
    for parent in parents:
        target = target[parent]
    target[name] = value
    response = client.post("/account/login/passkey", data={"csrf_token": csrf, "credential": json.dumps(credential)})
    assert response.status_code == 400
    assert "could not be verified" in response.get_data(as_text=True)
    assert_handled(response, errors_logged, field)


# --- an address no mail can be sent to -------------------------------------------------------

@pytest.mark.parametrize("address", ["\u00e9@example.com", "j\u00fcrgen@example.com", "\u7528\u6237@example.com"])
def test_an_address_whose_local_part_is_not_ascii_is_refused(app, client, seeded, errors_logged, address):
    """The mail library cannot put a non-ASCII local part on an envelope (Flask-Mail's
    sanitize_address, no SMTPUTF8): the change was accepted with a 202 and its link never sent."""
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import AuditEvent, User
    from test_localapi_support import LocalApi

    token = LocalApi(app, client).token()
    response = client.put("/localapi/email", json={"email": address, "current_password": "tulip-quartz-harbor-917"},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "email" in response.get_json()["errors"]
    with app.app_context():
        assert db.session.scalar(select(User.pending_email).where(User.username == "alice")) is None
        assert db.session.scalars(select(AuditEvent.event).where(AuditEvent.event == "mail_failed")).all() == []


def test_an_address_with_an_international_domain_is_still_taken():
    from identity.services.verification import check_email_address

    assert check_email_address("alice@b\u00fccher.example") is None
    assert check_email_address("\u00e9@example.com") is not None


# --- an authorization parameter sent without a value -----------------------------------------

OPTIONAL_AUTHORIZE = ["response_mode", "prompt", "max_age", "nonce", "login_hint", "ui_locales", "acr_values", "display",
                      "id_token_hint", "request", "request_uri", "claims_locales"]


@pytest.mark.parametrize("name", OPTIONAL_AUTHORIZE)
def test_an_optional_authorization_parameter_sent_empty_is_as_if_omitted(client, flow_clients, name):
    """RFC 6749 section 3.1: "Parameters sent without a value MUST be treated as if they were
    omitted from the request." A response_mode= was answered invalid_request."""
    from urllib.parse import urlencode

    from actions import OAuthActions, pkce_pair

    AuthActions(client).login()
    _, challenge = pkce_pair()
    params = OAuthActions(client).authorize_params(client_id="web", scope="openid", code_challenge=challenge,
                                                   code_challenge_method="S256", **{name: ""})
    response = client.get("/connect/authorize?" + urlencode(params))
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    location = response.headers["Location"]
    assert "error=" not in location and "code=" in location, (name, location)


# --- a client credential sent empty beside HTTP Basic ----------------------------------------

@pytest.mark.parametrize("path", ["/connect/token", "/connect/introspect", "/connect/revocation"])
@pytest.mark.parametrize("empty", ["client_secret", "client_id"])
def test_an_empty_client_parameter_beside_basic_is_as_if_omitted(client, seeded, path, empty):
    """RFC 6749 section 3.1: a parameter sent without a value is as if omitted. Beside HTTP Basic,
    client_secret= was "use one client authentication method" and client_id= "differs"."""
    import base64

    basic = "Basic " + base64.b64encode(b"service:service-secret-change-me").decode()
    response = client.post(path, data={"grant_type": "client_credentials", "token": "unknown", empty: ""},
                           headers={"Authorization": basic})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/connect/introspect", "/connect/revocation"])
def test_an_empty_token_is_a_missing_token(client, seeded, path):
    """token is REQUIRED (RFC 7009 and 7662 section 2.1); token= is as if omitted (RFC 6749 3.1)."""
    import base64

    basic = "Basic " + base64.b64encode(b"service:service-secret-change-me").decode()
    for form in ({}, {"token": ""}, {"token": "", "token_type_hint": "access_token"}):
        response = client.post(path, data=form, headers={"Authorization": basic})
        assert response.status_code == 400, (form, response.get_data(as_text=True))
        assert response.get_json()["error"] == "invalid_request"


# --- a token request's parameter sent without a value ----------------------------------------

@pytest.mark.parametrize("grant,form,client_id", [
    ("authorization_code", {"code": ""}, "web"),
    ("refresh_token", {"refresh_token": ""}, "web"),
    ("password", {"username": "", "password": "wrong-password-0"}, "legacy"),
    ("password", {"username": "alice", "password": ""}, "legacy"),
])
def test_an_empty_token_request_parameter_is_a_missing_one(app, client, flow_clients, grant, form, client_id):
    """RFC 6749 section 3.1: code=, refresh_token=, username= or password= is as if omitted, so
    invalid_request naming it, as when it is missing; not invalid_grant, and no failed sign-in."""
    from sqlalchemy import select

    from actions import OAuthActions
    from identity.extensions import db
    from identity.models import User

    response = OAuthActions(client).token(client_id, grant_type=grant, **form)
    empty = next(name for name, value in form.items() if value == "")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request", response.get_json()
    assert empty in response.get_json()["error_description"]
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 0
