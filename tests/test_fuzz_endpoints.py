"""Every endpoint under generated hostile input: no 5xx and no logged traceback, whatever arrives.

Hypothesis builds requests in-process (the Flask test client) for every route of the app
(test_every_route_is_fuzzed keeps the list whole): raw query strings (invalid UTF-8,
percent-encoded garbage, NUL, repeated and oversized parameters), bodies of any type (forms,
JSON with lone surrogates, JSON that is not an object of strings, raw bytes), and headers as a
server hands them over (latin-1 decoded bytes: Basic credentials that are not UTF-8, garbage
cookies, content types and origins); half the requests carry the session's CSRF token, so they
reach the views and their forms.
derandomize=True makes CI run the same cases every time; the examples are bounded (30 a route,
20 signed in) so the module takes about a minute on two cores. Runs on SQLite and, with FLASK_SQLALCHEMY_DATABASE_URI, PostgreSQL
(which refuses NUL in text: the case that made several lookups a 5xx).
"""

import base64
import json
import logging
from urllib.parse import quote_from_bytes, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions import AuthActions
from conftest import csrf_token
from test_localapi_support import CHEAP_ARGON2, LocalApi

ENDPOINTS = [
    ("GET", "/connect/authorize"), ("POST", "/connect/authorize"), ("POST", "/connect/token"),
    ("POST", "/connect/revocation"), ("POST", "/connect/introspect"), ("GET", "/connect/userinfo"),
    ("POST", "/connect/userinfo"), ("GET", "/connect/endsession"), ("POST", "/connect/endsession"),
    ("GET", "/.well-known/openid-configuration"), ("GET", "/.well-known/openid-configuration/jwks"),
    ("GET", "/.well-known/change-password"),
    ("GET", "/account/login"), ("POST", "/account/login"), ("GET", "/account/logout"), ("POST", "/account/logout"),
    ("GET", "/account/password"), ("POST", "/account/password"), ("POST", "/account/password/check"),
    ("GET", "/consent"), ("POST", "/consent"), ("GET", "/account/grants"), ("POST", "/account/grants/revoke"),
    ("GET", "/account/sessions"), ("POST", "/account/sessions"), ("GET", "/account/mfa"), ("POST", "/account/mfa"),
    ("GET", "/account/login/mfa"), ("POST", "/account/login/mfa"), ("GET", "/account/mfa/passkeys"),
    ("POST", "/account/mfa/passkeys"), ("POST", "/account/mfa/passkeys/options"),
    ("POST", "/account/mfa/passkeys/1/remove"), ("POST", "/account/login/passkey"),
    ("POST", "/account/login/passkey/options"), ("POST", "/account/login/mfa/passkey"),
    ("POST", "/account/login/mfa/passkey/options"), ("GET", "/account/forgot-password"),
    ("POST", "/account/forgot-password"), ("GET", "/account/reset-password"), ("POST", "/account/reset-password"),
    ("GET", "/localapi/account"), ("POST", "/localapi/password"), ("GET", "/localapi/openapi.json"),
    ("GET", "/localapi/sessions"), ("DELETE", "/localapi/sessions"), ("DELETE", "/localapi/sessions/app_1"),
    ("GET", "/account/email"), ("POST", "/account/email"), ("GET", "/account/email/required"),
    ("POST", "/account/email/required"), ("GET", "/account/verify-email"), ("GET", "/account/register"),
    ("POST", "/account/register"), ("POST", "/localapi/email/verification"), ("PUT", "/localapi/email"),
    ("GET", "/"), ("GET", "/diagnostics"), ("GET", "/favicon.ico"), ("GET", "/problems/mfa-required"), ("GET", "/healthz"), ("GET", "/readyz"),
]
NAMES = ["client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "prompt", "max_age", "response_mode",
         "code_challenge", "code_challenge_method", "grant_type", "code", "code_verifier", "refresh_token", "token",
         "token_type_hint", "client_secret", "username", "password", "remember", "csrf_token", "returnUrl",
         "id_token_hint", "post_logout_redirect_uri", "decision", "current_password", "new_password",
         "confirm_password", "access_token", "email", "name", "change-email", "change-current_password",
         "send-csrf_token", "change-csrf_token"]
VALUES = ["spa", "web", "service", "mobile", "http://127.0.0.1:8080/callback", "http://evil@127.0.0.1:1/callback",
          "http://127.0.0.1:99999/callback", "code", "code id_token", "openid", "openid profile offline_access",
          "client_credentials", "authorization_code", "refresh_token", "password", "S256", "plain", "none", "login",
          "consent", "form_post", "fragment", "-1", "99999999999999999999", "alice", "tulip-quartz-harbor-917",
          "access_token", "weird", "a.b.c", "/account/password", "//evil.test", "https://evil.test/"]
FORM = "application/x-www-form-urlencoded"

BYTE_SOUP = [b"\xff", b"\xfe\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"%", b"%zz", b"%ff", b"%00", b"&", b"=", b";",
             b"+", b"\\", b'"', b"\r\n", b"\x7f", b"\xe2\x80\xa8", "\u00e9".encode(), "\U0001f600".encode()]

texts = st.text(max_size=40) | st.sampled_from(["", "\x00", '"', "\\", "\u2028", "a\tb", "\x01", "x" * 5000])
names = st.sampled_from(NAMES) | st.text(max_size=12)
values = st.sampled_from(VALUES) | texts
pairs = st.lists(st.tuples(names, values), max_size=8).flatmap(
    lambda ps: st.just(ps) | st.just(ps + ps[:1]))  # sometimes the first parameter twice
raw_bytes = st.lists(st.sampled_from(BYTE_SOUP) | st.binary(max_size=12), max_size=10).map(b"".join)


@st.composite
def query_strings(draw) -> str:
    """QUERY_STRING as a server puts it in the environ: the raw bytes, latin-1 decoded."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        raw = urlencode(draw(pairs)).encode()
    elif kind == 1:
        raw = draw(raw_bytes)
    else:
        raw = b"&".join(quote_from_bytes(n).encode() + b"=" + quote_from_bytes(v).encode()
                        for n, v in draw(st.lists(st.tuples(raw_bytes, raw_bytes), max_size=4)))
    return raw.decode("latin-1")


@st.composite
def bodies(draw) -> tuple[bytes, str | None]:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return urlencode(draw(pairs)).encode(), FORM
    if kind == 1:
        return draw(raw_bytes), draw(st.sampled_from([FORM, "application/json", "multipart/form-data; boundary=x",
                                                    "text/plain", FORM + "; charset=latin-1", "\xff/\xfe", ""]))
    if kind == 2:  # JSON, with lone surrogates and NUL the JSON escapes can carry
        obj = {draw(names): draw(st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "x", "\\ud83d"])) for _ in range(3)}
        text = "{" + ", ".join(f"{json.dumps(k)}: \"{v}\"" for k, v in obj.items()) + "}"
        return text.encode(), "application/json"
    if kind == 3:
        return json.dumps(draw(st.dictionaries(names, values | st.integers() | st.none(), max_size=4))).encode(), "application/json"
    if kind == 4:  # JSON that is no object of strings: a number, a string, a list; fields of other types
        other = st.integers() | st.booleans() | st.none() | st.lists(st.integers(), max_size=2)
        return json.dumps(draw(other | st.text(max_size=8) | st.dictionaries(names, other, max_size=4))).encode(), "application/json"
    return b"", None


def basic_header(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@st.composite
def header_sets(draw) -> dict:
    """Extra environ entries: headers as a WSGI server would give them (latin-1 decoded bytes)."""
    environ = {}
    auth = draw(st.integers(0, 5))
    if auth == 1:
        environ["HTTP_AUTHORIZATION"] = basic_header(draw(raw_bytes))
    elif auth == 2:
        environ["HTTP_AUTHORIZATION"] = basic_header(b"service:" + draw(raw_bytes))
    elif auth == 3:
        environ["HTTP_AUTHORIZATION"] = "Bearer " + draw(raw_bytes).decode("latin-1")
    elif auth == 4:
        environ["HTTP_AUTHORIZATION"] = draw(raw_bytes).decode("latin-1")
    for header in ("HTTP_COOKIE", "HTTP_ORIGIN", "HTTP_ACCEPT_LANGUAGE", "HTTP_X_REQUEST_ID", "HTTP_REFERER"):
        if draw(st.integers(0, 4)) == 0:
            environ[header] = draw(raw_bytes).decode("latin-1")
    return environ


requests = st.tuples(query_strings(), bodies(), header_sets())
FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture
def app_config():
    return {**CHEAP_ARGON2, "LOCKOUT_MAX_FAILURES": 10**6, "REGISTRATION_ENABLED": True}


def test_every_route_is_fuzzed(app):
    """A route added to the app is added to ENDPOINTS too (its variables filled in by hand)."""
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    fuzzed = {(method, path.replace("/app_1", "/<entry_id>").replace("/1/remove", "/<int(max=2147483647):passkey_id>/remove"))
              for method, path in ENDPOINTS}
    assert routes - fuzzed == set()
    assert fuzzed - routes == set()


@pytest.fixture
def errors_logged(caplog):
    caplog.set_level(logging.ERROR)
    return caplog


def send(client, method, path, query, body, environ):
    data, content_type = body
    if method == "GET":
        data, content_type = None, None
    overrides = {"QUERY_STRING": query, **environ}
    kwargs = {"data": data, "environ_overrides": overrides}
    if content_type is not None:
        kwargs["content_type"] = content_type
    return client.open(path, method=method, **kwargs)


def check(response, caplog, request):
    assert response.status_code < 500, (request, response.status_code, response.get_data()[:300])
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, (request, [r.getMessage() for r in bad])
    body = response.get_data()
    assert b"Traceback" not in body


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_anonymous_requests_never_get_a_5xx(client, flow_clients, errors_logged, method, path):
    csrf = csrf_token(client.get("/account/login").get_data(as_text=True))

    @FUZZ
    @given(requests, st.booleans())
    def run(request, with_csrf):
        query, body, environ = request
        if with_csrf:  # past the CSRF check, to the view and its form
            environ = {**environ, "HTTP_X_CSRFTOKEN": csrf}
        errors_logged.clear()
        check(send(client, method, path, query, body, environ), errors_logged, (method, path, request))

    run()


SIGNED_IN = [e for e in ENDPOINTS if e[0] in ("GET", "DELETE") or e[1] in (
    "/consent", "/account/password", "/connect/authorize", "/account/grants/revoke", "/localapi/password",
    "/account/sessions", "/account/mfa", "/account/password/check", "/account/mfa/passkeys",
    "/account/mfa/passkeys/options", "/account/mfa/passkeys/1/remove", "/account/email", "/localapi/email")]


@pytest.mark.parametrize("method,path", SIGNED_IN)
def test_signed_in_requests_with_a_bearer_token_never_get_a_5xx(app, client, flow_clients, errors_logged, method, path):
    """The same, for a signed-in browser (pages past the sign-in) and with a valid bearer token."""
    AuthActions(client).login()
    token = LocalApi(app, client).token()
    csrf = csrf_token(client.get("/account/password").get_data(as_text=True))

    @settings(FUZZ, max_examples=10)
    @given(requests, st.booleans(), st.booleans())
    def run(request, with_token, with_csrf):
        query, body, environ = request
        if with_token:
            environ = {**environ, "HTTP_AUTHORIZATION": f"Bearer {token}"}
        if with_csrf:
            environ = {**environ, "HTTP_X_CSRFTOKEN": csrf}
        errors_logged.clear()
        check(send(client, method, path, query, body, environ), errors_logged, (method, path, request))

    run()
