"""Hardening: security headers on every response, no caching of secrets, body and field size
limits, request ids, logs that are structured and never hold a secret, health and readiness."""

import io
import json
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select, text

from actions import AuthActions, OAuthActions, padded_chunks, pkce_pair
from conftest import ALICE_PASSWORD, ROOT, csrf_token
from identity.extensions import db
from identity.models import AuditEvent

NEW_PASSWORD = "violet-anchor-meadow-482"
SAFE_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def assert_security_headers(response, what: str) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy")
    assert csp, f"{what}: no Content-Security-Policy"
    directives = csp_directives(csp)
    scripts = directives.get("script-src", directives.get("default-src"))
    assert scripts is not None, f"{what}: the CSP does not govern scripts: {csp}"
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts and "*" not in scripts, csp
    assert directives.get("frame-ancestors") == ["'none'"], f"{what}: {csp}"
    assert directives.get("object-src") == ["'none'"], f"{what}: {csp}"
    assert "base-uri" in directives, f"{what}: {csp}"
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") in SAFE_REFERRER_POLICIES, f"{what}: {headers.get('Referrer-Policy')}"
    assert re.fullmatch(r"[0-9A-Za-z._-]{8,64}", headers.get("X-Request-Id", "")), f"{what}: request id"


def sign_in(client):
    response = AuthActions(client).login()
    assert response.status_code == 302, response.get_data(as_text=True)


def consent_location(client) -> str:
    """A pending authorization of the SPA, signed in: the consent page's address."""
    oauth = OAuthActions(client)
    response = oauth.authorize(code_challenge=pkce_pair()[1], code_challenge_method="S256")
    assert response.status_code == 302 and "/consent" in response.headers["Location"], response.headers
    return response.headers["Location"]


def local_api_token(client) -> str:
    sign_in(client)
    token, _ = OAuthActions(client).code_flow(scope="openid IdentityServerApi")
    assert token.status_code == 200, token.get_data(as_text=True)
    return token.get_json()["access_token"]


# --- security headers -------------------------------------------------------------------------

ANONYMOUS_PATHS = [
    "/", "/account/login", "/account/logout", "/account/password", "/account/grants", "/diagnostics", "/consent",
    "/connect/authorize?client_id=spa", "/connect/userinfo", "/connect/endsession",
    "/.well-known/openid-configuration", "/.well-known/openid-configuration/jwks",
    "/healthz", "/readyz", "/localapi/account", "/localapi/openapi.json", "/static/site.css",
    "/static/js/strength.js", "/no/such/page", "/connect/no-such-endpoint",
    "/account/email", "/account/email/required", "/account/verify-email?token=x", "/account/register",
]


@pytest.mark.parametrize("path", ANONYMOUS_PATHS)
def test_security_headers_on_every_anonymous_response(client, seeded, path):
    response = client.get(path)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert_security_headers(response, f"GET {path} ({response.status_code})")


@pytest.mark.parametrize("path", ["/", "/account/password", "/account/grants", "/diagnostics", "/account/logout"])
def test_security_headers_on_signed_in_pages(client, seeded, path):
    sign_in(client)
    response = client.get(path)
    assert response.status_code == 200
    assert_security_headers(response, f"GET {path} signed in")


def test_security_headers_on_posts_and_errors(client, seeded):
    responses = {
        "refused sign-in": client.post("/account/login", data={"username": "alice", "password": "wrong"}),
        "token error": client.post("/connect/token", data={"grant_type": "password"}),
        "token": OAuthActions(client).token("service", grant_type="client_credentials", scope="IdentityServerApi"),
        "405": client.delete("/account/login"),
        "413": client.post("/connect/token", data={"x": "y" * 70_000}),
        "sign-in redirect": AuthActions(client).login(),
    }
    responses["consent"] = client.get(consent_location(client))
    for what, response in responses.items():
        assert_security_headers(response, what)


def test_rendered_pages_need_no_inline_script_or_style(client, seeded):
    """The CSP forbids inline script and style; the pages must not rely on them."""
    sign_in(client)
    pages = ["/", "/account/password", "/account/grants", "/diagnostics", "/account/logout", "/nowhere",
             consent_location(client)]
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline <script> on {path}"
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), f"inline event handler on {path}"
        assert not re.search(r"<style\b|\sstyle\s*=", html, re.I), f"inline style on {path}"


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))


def test_the_template_checks_read_the_apps_templates(app):
    """Guard for the two checks below: they read the folder the app renders from."""
    assert len(TEMPLATES) >= 5
    searchpath = [Path(folder).resolve() for folder in app.jinja_loader.searchpath]
    assert (ROOT / "templates").resolve() in searchpath, searchpath


@pytest.mark.parametrize("template", [str(p.relative_to(ROOT)) for p in TEMPLATES])
def test_templates_have_no_inline_script_or_style(template):
    html = (ROOT / template).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=\s*[\"']", html, re.I), "inline event handler"
    assert not re.search(r"<style\b|\sstyle\s*=\s*[\"']", html, re.I), "inline style"


def test_pages_do_not_suppress_the_referer_that_csrf_needs_over_https():
    """Flask-WTF refuses a form posted over HTTPS without a same-site Referer; a page that sets
    <meta name="referrer" content="no-referrer"> makes every one of its forms fail in production."""
    for template in TEMPLATES:
        html = template.read_text()
        has_form = "<form" in html or template.name == "base.html"  # base.html holds the sign-out form
        meta = re.search(r"""<meta\s+name=["']referrer["']\s+content=["']([^"']+)["']""", html)
        if has_form and meta and template.name != "form_post.html":  # form_post posts to the client, no CSRF
            assert meta.group(1) not in ("no-referrer",), \
                f"{template.relative_to(ROOT)} sets referrer {meta.group(1)!r}: forms over HTTPS fail the CSRF referrer check"


# --- HSTS -----------------------------------------------------------------------------------


def test_hsts_over_https(client):
    response = client.get("/account/login")
    hsts = response.headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 180 * 24 * 3600


def test_no_hsts_over_plain_http(app):
    response = app.test_client().get("/account/login", base_url="http://localhost")
    assert "Strict-Transport-Security" not in response.headers


def test_forwarded_proto_is_ignored_unless_a_proxy_is_trusted(app):
    response = app.test_client().get("/", base_url="http://localhost", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1}])
def test_hsts_behind_a_trusted_tls_proxy(app):
    response = app.test_client().get("/", base_url="http://localhost", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in response.headers


# --- plain HTTP that did not come through a TLS proxy --------------------------------------------

PLAIN_HTTP = "http://id.example.com"  # not a loopback host: Authlib refuses OAuth over it


@pytest.mark.parametrize("path", ["/connect/token", "/connect/revocation", "/connect/introspect"])
def test_a_protocol_request_over_plain_http_is_an_oauth_error_not_a_500(app, seeded, path):
    """Authlib refuses to build an OAuth request over plain HTTP (InsecureTransportError); that
    refusal is the answer, not an unhandled error: a TLS proxy that is not trusted, or a client
    that reached the server's port directly, learns what is wrong."""
    response = app.test_client().post(path, base_url=PLAIN_HTTP, data={
        "grant_type": "client_credentials", "token": "x", "client_id": "service",
        "client_secret": "service-secret-change-me"})
    assert response.status_code == 400, (response.status_code, response.get_json())
    assert response.get_json()["error"] == "insecure_transport"
    assert response.headers["Cache-Control"] == "no-store"


def test_an_authorization_request_over_plain_http_is_refused_on_a_page_not_a_500(app, seeded):
    response = app.test_client().get("/connect/authorize?client_id=spa&response_type=code&scope=openid"
                                     "&redirect_uri=http://127.0.0.1:8080/callback", base_url=PLAIN_HTTP)
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    assert "Location" not in response.headers  # an error page here, never a redirect over plain HTTP
    assert "OAuth 2 MUST utilize https." in response.get_data(as_text=True)


def test_no_route_answers_plain_http_with_a_server_error(app, seeded):
    client = app.test_client()
    answers = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in sorted(rule.methods & {"GET", "POST", "PUT", "DELETE"}):
            answers[method, path] = client.open(path, method=method, base_url=PLAIN_HTTP,
                                                data={"grant_type": "client_credentials", "token": "x"}).status_code
    assert len(answers) > 40, answers
    assert {key: status for key, status in answers.items() if status >= 500} == {}


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "ISSUER": "https://id.example.com"}])
def test_a_client_sent_forwarded_prefix_does_not_steer_redirects(app, seeded):
    """A proxy that sets X-Forwarded-For/-Proto/-Host (the documented nginx block) passes on a
    client's own X-Forwarded-Prefix; it must not become the base of the app's redirects."""
    proxied = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example.com",
               "X-Forwarded-Port": "443", "X-Forwarded-Prefix": "//evil.example"}
    response = app.test_client().get("/account/password", headers=proxied)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login?"), response.headers["Location"]
    assert "evil.example" not in response.headers["Location"]


# --- no caching of pages and answers that hold secrets ------------------------------------------


def assert_no_store(response, what):
    assert "no-store" in response.headers.get("Cache-Control", ""), f"{what}: Cache-Control {response.headers.get('Cache-Control')!r}"


def test_login_page_is_not_cached(client, seeded):
    assert_no_store(client.get("/account/login"), "login page")
    assert_no_store(client.post("/account/login", data={"csrf_token": csrf_token(client.get("/account/login").get_data(as_text=True)),
                                                        "username": "alice", "password": "wrong"}), "failed sign-in")
    assert_no_store(AuthActions(client).login(), "sign-in redirect")


def test_consent_page_is_not_cached(client, seeded):
    sign_in(client)
    response = client.get(consent_location(client))
    assert response.status_code == 200
    assert_no_store(response, "consent page")


def test_account_pages_are_not_cached(client, seeded):
    sign_in(client)
    for path in ("/account/password", "/account/grants", "/account/logout", "/diagnostics"):
        assert_no_store(client.get(path), path)


def test_token_responses_are_not_cached(client, seeded):
    oauth = OAuthActions(client)
    success = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    assert success.status_code == 200
    assert_no_store(success, "token")
    assert success.headers.get("Pragma") == "no-cache"
    failure = oauth.token("service", grant_type="authorization_code", code="nope")
    assert failure.status_code == 400
    assert_no_store(failure, "token error")


def test_local_api_responses_are_not_cached(client, seeded):
    token = local_api_token(client)
    bearer = {"Authorization": f"Bearer {token}"}
    assert_no_store(client.get("/localapi/account", headers=bearer), "/localapi/account")
    assert_no_store(client.get("/localapi/account"), "/localapi/account 401")
    change = client.post("/localapi/password", headers=bearer, json={
        "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert change.status_code == 204
    assert_no_store(change, "/localapi/password")


def test_userinfo_is_not_cached(client, seeded):
    token = local_api_token(client)
    assert_no_store(client.get("/connect/userinfo", headers={"Authorization": f"Bearer {token}"}), "userinfo")


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://localhost"}])  # without it discovery names the Host
def test_public_documents_stay_cacheable(client):
    """Discovery and the stylesheet are public: caching them is right (and needed at scale)."""
    for path in ("/.well-known/openid-configuration", "/static/site.css"):
        assert "no-store" not in client.get(path).headers.get("Cache-Control", ""), path


# --- size limits ----------------------------------------------------------------------------------

TOO_BIG = 70 * 1024  # MAX_CONTENT_LENGTH is 64 KiB


def test_oversized_form_on_a_page_is_413_not_500(client, seeded):
    response = client.post("/account/login", data={"username": "alice", "password": "p" * TOO_BIG})
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "too large" in response.get_data(as_text=True)


def test_oversized_token_request_is_413_oauth_json(client, seeded):
    response = client.post("/connect/token", data={"grant_type": "client_credentials", "scope": "s" * TOO_BIG})
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"


def test_oversized_local_api_body_is_413_problem(client, seeded):
    token = local_api_token(client)
    response = client.post("/localapi/password", headers={"Authorization": f"Bearer {token}"},
                           data=json.dumps({"current_password": "x" * TOO_BIG}), content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 413


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": 2048}])
def test_the_body_limit_follows_the_setting(client, seeded):
    assert client.post("/connect/token", data={"grant_type": "x", "pad": "p" * 3000}).status_code == 413
    assert client.post("/connect/token", data={"grant_type": "x", "pad": "p" * 1000}).status_code == 400


def test_oversized_chunked_body_is_413_like_any_other(live_server, seeded):
    """A streamed (chunked) body has no Content-Length to refuse up front: it is read to one byte
    past MAX_CONTENT_LENGTH and refused with the same 413 OAuth error, never cut short and used."""
    tail = b"grant_type=client_credentials&scope=IdentityServerApi"
    response = requests.post(live_server.url + "/connect/token", data=padded_chunks(TOO_BIG, tail), timeout=10,
                             auth=("service", OAuthActions.SECRETS["service"]),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413, f"{response.status_code}: {response.text}"
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.text


def test_chunked_body_within_the_limit_is_read_whole(live_server, seeded):
    tail = b"grant_type=client_credentials&scope=IdentityServerApi"
    response = requests.post(live_server.url + "/connect/token", data=padded_chunks(40 * 1024, tail), timeout=10,
                             auth=("service", OAuthActions.SECRETS["service"]),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.json()["scope"] == "IdentityServerApi", "the fields after 40 KiB of chunks were read"


def chunked(body: bytes) -> dict:
    """Test-client arguments for a body the server has de-chunked (no Content-Length)."""
    return {"input_stream": io.BytesIO(body),
            "environ_overrides": {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked",
                                  "CONTENT_LENGTH": ""}}


def test_oversized_chunked_bodies_get_each_path_s_413(client, seeded):
    token = local_api_token(client)
    api = client.post("/localapi/password", headers={"Authorization": f"Bearer {token}"},
                      content_type="application/json", **chunked(json.dumps({"current_password": "x" * TOO_BIG}).encode()))
    assert api.status_code == 413 and api.mimetype == "application/problem+json"
    assert api.get_json()["status"] == 413
    page = client.post("/account/login", content_type="application/x-www-form-urlencoded",
                       **chunked(b"username=alice&password=" + b"p" * TOO_BIG))
    assert page.status_code == 413 and page.mimetype == "text/html"


@pytest.mark.parametrize("field,value", [("username", "u" * 5000), ("password", "p" * 5000)])
def test_overlong_sign_in_fields_are_refused_calmly(client, seeded, field, value):
    page = client.get("/account/login").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "username": "alice", "password": ALICE_PASSWORD, field: value}
    response = client.post("/account/login", data=data)
    assert response.status_code == 400, "refused as a form error, not signed in and not a 500"


def test_overlong_new_password_is_a_field_error(client, seeded):
    token = local_api_token(client)
    long_password = "correct horse battery staple " * 20
    response = client.post("/localapi/password", headers={"Authorization": f"Bearer {token}"}, json={
        "current_password": ALICE_PASSWORD, "new_password": long_password, "confirm_password": long_password})
    assert response.status_code == 400
    assert "new_password" in response.get_json()["errors"]


@pytest.mark.parametrize("form", [
    {"grant_type": "client_credentials", "client_id": "c" * 5000, "client_secret": "x"},
    {"grant_type": "authorization_code", "client_id": "spa", "code": "c" * 20000, "code_verifier": "v" * 5000},
    {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": "r" * 20000},
])
def test_overlong_token_parameters_are_oauth_errors(client, seeded, form):
    response = client.post("/connect/token", data=form)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json()["error"]


def test_overlong_bearer_token_is_401(client, seeded):
    response = client.get("/localapi/account", headers={"Authorization": "Bearer " + "a" * 20000})
    assert response.status_code == 401


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_SENSITIVE": "2 per minute"}])
def test_rate_limited_answers_carry_the_same_headers(client, seeded):
    auth = AuthActions(client)
    statuses = [auth.login(password="wrong-password-123").status_code for _ in range(2)]
    limited = auth.login(password="wrong-password-123")
    assert limited.status_code == 429, statuses + [limited.status_code]
    assert limited.headers.get("Retry-After")
    assert_security_headers(limited, "429")
    assert_no_store(limited, "429")


# --- request ids -------------------------------------------------------------------------------


def test_every_response_has_its_own_request_id(client):
    ids = {client.get(path).headers["X-Request-Id"] for path in ("/", "/", "/healthz", "/nowhere")}
    assert len(ids) == 4


def test_a_sane_incoming_request_id_is_kept(client):
    assert client.get("/", headers={"X-Request-Id": "lb-4f2a-991"}).headers["X-Request-Id"] == "lb-4f2a-991"


@pytest.mark.parametrize("incoming", ["x" * 500, "bad\x01id", ""])
def test_an_unusable_incoming_request_id_is_replaced(client, incoming):
    got = client.get("/", headers={"X-Request-Id": incoming}).headers["X-Request-Id"]
    assert got and got != incoming and len(got) <= 64 and got.isprintable()


# --- logs -------------------------------------------------------------------------------------------


@pytest.fixture
def logs(caplog):
    """Every record at DEBUG, as when an operator turns the root logger up to DEBUG. Levels the
    app pins on a library's logger are left as they are (that is one way to keep secrets out)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="identity")
    return caplog


def everything_logged_by(record) -> str:
    """The message, its arguments, any traceback and extra fields of one record."""
    return "\n".join([record.getMessage(), repr(record.args), record.exc_text or "", repr(vars(record))])


def everything_logged(caplog) -> str:
    return "\n".join(everything_logged_by(record) for record in caplog.records)


def test_secrets_are_never_logged(app, client, seeded, logs):
    """Passwords, client secrets, codes and tokens appear in no log record, at any level."""
    auth, oauth = AuthActions(client), OAuthActions(client)
    wrong_password = "tulip-quartz-harbor-918"  # a typo of the real one: just as secret
    assert auth.login(password=wrong_password).status_code == 400
    assert auth.login().status_code == 302

    verifier, challenge = pkce_pair()
    authorize = oauth.authorize(client_id="mobile", response_type="code id_token", nonce="n-0S6",
                                scope="openid offline_access IdentityServerApi", response_mode="fragment",
                                code_challenge=challenge, code_challenge_method="S256")
    assert authorize.status_code == 302, authorize.get_data(as_text=True)
    fragment = dict(p.split("=", 1) for p in urlsplit(authorize.headers["Location"]).fragment.split("&"))
    code = fragment["code"]
    tokens = oauth.token("mobile", grant_type="authorization_code", code=code, code_verifier=verifier,
                         redirect_uri=oauth.REDIRECTS["mobile"]).get_json()
    refreshed = oauth.token("mobile", auth="post", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).get_json()
    service = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").get_json()
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert client.get("/connect/userinfo", headers=bearer).status_code == 200
    oauth.client.post("/connect/introspect", data={"token": refreshed["access_token"]},
                      headers={"Authorization": "Basic bW9iaWxlOnMzY3JldA=="})
    assert client.post("/localapi/password", headers=bearer, json={
        "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}).status_code == 204
    assert client.post("/connect/revocation", data={"token": refreshed["refresh_token"]},
                       headers={"Authorization": "Basic bW9iaWxlOnMzY3JldA=="}).status_code == 200

    secrets_used = {
        "alice's password": ALICE_PASSWORD, "mistyped password": wrong_password, "new password": NEW_PASSWORD,
        "mobile's client secret": "s3cret", "service's client secret": OAuthActions.SECRETS["service"],
        "authorization code": code, "code verifier": verifier, "id token": tokens["id_token"],
        "access token": tokens["access_token"], "refresh token": tokens["refresh_token"],
        "refreshed access token": refreshed["access_token"], "refreshed refresh token": refreshed["refresh_token"],
        "client-credentials token": service["access_token"],
    }
    logged = everything_logged(logs)
    assert any(r.name == "identity.requests" for r in logs.records), "the requests were logged at all"
    for what, secret in secrets_used.items():
        leaks = sorted({f"{r.name} {r.levelname}" for r in logs.records if secret in everything_logged_by(r)})
        assert not leaks, f"the {what} was logged by: {leaks}"
        # the signature part alone, cut from a JWT, is as good as the token
        assert secret.rsplit(".", 1)[-1] not in logged, f"part of the {what} was logged"

    with app.app_context():
        audit = json.dumps([[e.event, e.detail, e.client_id] for e in db.session.scalars(select(AuditEvent))])
    for what, secret in secrets_used.items():
        assert secret not in audit, f"the {what} is in the audit log"


def test_request_log_lines_are_json_with_the_request_id(client, logs):
    response = client.get("/account/login?returnUrl=/connect/authorize%3Fcode%3DSECRET-IN-QUERY",
                          headers={"X-Request-Id": "hardening-req-1"})
    lines = [r.getMessage() for r in logs.records if r.name == "identity.requests"]
    assert lines, "no request log line"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    entry = next(e for e in entries if e.get("request_id") == "hardening-req-1")
    assert response.headers["X-Request-Id"] == "hardening-req-1"
    assert entry["method"] == "GET" and entry["path"] == "/account/login" and entry["status"] == 200
    assert isinstance(entry["ms"], (int, float))
    assert "SECRET-IN-QUERY" not in "\n".join(lines), "query strings stay out of the log"


def test_error_log_lines_give_the_time_in_utc_with_its_offset(monkeypatch):
    """The JSON error line's time was the server's local time without an offset: under TZ=Asia/Kolkata
    an error at 12:00 UTC was logged as 17:30, indistinguishable from one at 17:30 UTC."""
    import time
    from identity.plumbing.headers import JsonFormatter

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        record = logging.LogRecord("identity.test", logging.ERROR, __file__, 1, "boom", None, None)
        record.created = 1796558400.25  # 2026-12-06T12:00:00.250Z
        entry = json.loads(JsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert entry["time"] == "2026-12-06T12:00:00.250+00:00", entry["time"]


def test_error_log_lines_carry_the_request_id(app, client, logs):
    """An error logged while serving a request can be matched to its request."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/_hardening_boom")
    def boom():
        raise RuntimeError("boom for the test")

    response = client.get("/_hardening_boom", headers={"X-Request-Id": "hardening-req-500"})
    assert response.status_code == 500
    assert "Traceback" not in response.get_data(as_text=True) and "boom for the test" not in response.get_data(as_text=True)
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert errors, "the unexpected error was logged"
    assert all("hardening-req-500" in r.getMessage() or getattr(r, "request_id", None) == "hardening-req-500"
               for r in errors), [r.getMessage() for r in errors]


@pytest.mark.server
def test_the_deployed_server_writes_json_request_lines(tmp_path):
    """Under gunicorn (as deployed) the structured request lines reach the log, with the request id."""
    from servers import AppServer

    with AppServer("sqlite:///" + str(tmp_path / "logs.db"), workers=1, name="logs", log_dir=tmp_path) as server:
        response = requests.get(server.url + "/account/login", headers={"X-Request-Id": "deployed-req-77"}, timeout=10)
        assert response.status_code == 200
    log = server.log(tail=2000)
    lines = [line for line in log.splitlines() if "deployed-req-77" in line]
    assert lines, f"no log line carries the request id:\n{log}"
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line[line.index("{"):]))
        except ValueError:
            pass
    assert any(e.get("request_id") == "deployed-req-77" and e.get("path") == "/account/login" for e in entries), \
        f"no JSON request line with the request id:\n{log}"


# --- health and readiness ---------------------------------------------------------------------------


def test_healthz_answers_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_200_when_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "ready"
    assert_no_store(response, "readyz")


FIRST_REVISION = "06e791e9e23d"  # identity/migrations/versions/06e791e9e23d_initial_schema.py


def test_readyz_says_a_schema_newer_than_the_code_is_not_fixed_by_an_upgrade(own_sqlite_app):
    """A database that a newer release upgraded is at a revision this code does not have: `flask
    db upgrade` here fails ("Can't locate revision"), so the reason must not send the operator there."""
    client = own_sqlite_app.test_client()
    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    response = client.get("/readyz")
    reason = response.get_json()["reason"]
    assert response.status_code == 503 and "ffffffffffff" in reason and "does not know" in reason
    assert "db upgrade" not in reason and head in reason
    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})


def test_readyz_is_503_with_a_reason_when_the_schema_is_out_of_date(own_sqlite_app):
    client = own_sqlite_app.test_client()
    assert client.get("/readyz").status_code == 200
    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :first"), {"first": FIRST_REVISION})

    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert "out of date" in body["reason"] and head in body["reason"] and "db upgrade" in body["reason"]
    assert client.get("/healthz").status_code == 200, "the process is still up"

    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    assert client.get("/readyz").status_code == 200, "ready again once the schema is current"


def test_readyz_logs_its_reason_when_it_changes_not_at_every_probe(own_sqlite_app, caplog):
    """An instance that stays NotReady says why in its own log (the probe's body is seen by the
    orchestrator only): once when the reason appears, once when it is ready again."""
    caplog.set_level(logging.INFO, logger="identity.readiness")
    client = own_sqlite_app.test_client()
    assert client.get("/readyz").status_code == 200
    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :first"), {"first": FIRST_REVISION})
    for _ in range(3):
        assert client.get("/readyz").status_code == 503
    with own_sqlite_app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 200

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "identity.readiness"]
    assert len(lines) == 2, lines
    assert lines[0][0] == "WARNING" and lines[0][1].startswith("not ready: ") and "out of date" in lines[0][1]
    assert lines[1][1].startswith("ready again") and "out of date" in lines[1][1]


def test_readyz_is_503_when_the_signing_keys_cannot_be_loaded(own_sqlite_app, monkeypatch):
    from identity.services import keys

    def broken(alg):
        raise RuntimeError("key material unreadable")

    monkeypatch.setattr(keys, "signing_key", broken)
    response = own_sqlite_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "signing key" in response.get_json()["reason"]
    assert "unreadable" not in response.get_json()["reason"], "the reason names the problem, not internals"
