"""The OpenAPI review: each test pins a difference between /localapi/openapi.json and what the
local API does that a client generated from the document would trip on."""

import pytest

from openapi_review_support import check_response, schema_errors, undocumented_headers
from test_localapi_support import ALICE_PASSWORD, LocalApi, bearer


@pytest.fixture
def api(app, client, seeded):
    return LocalApi(app, client)


def document_of(api) -> dict:
    response = api.client.get("/localapi/openapi.json", headers=bearer(api.token()))
    assert response.status_code == 200
    return response.get_json()


# --- DELETE /localapi/sessions/{id}: any id is a string the document allows ---------------------


@pytest.mark.parametrize("entry", ["app_%00", "browser_a%00b"])
def test_a_session_id_with_a_nul_is_a_404_as_documented(api, entry):
    """The path parameter is any string; an id holding NUL is no live session's: 404, not the 503
    PostgreSQL's refusal of a NUL in a text parameter became."""
    document = document_of(api)
    response = api.client.delete(f"/localapi/sessions/{entry}", headers=bearer(api.token()))
    assert response.status_code == 404, response.get_data(as_text=True)
    check_response(document, "delete", f"/localapi/sessions/{entry}", response)


# --- 503: the database failing is an answer of every operation -----------------------------------


@pytest.mark.database_independent
def test_every_operation_documents_the_503_a_database_failure_gives(api, tmp_path):
    """With its database unreachable (a missing volume here; an outage or a statement timeout in
    production) every route answers a 503 problem with Retry-After: the document must list it."""
    from app import create_app
    from conftest import HttpsClient, make_config

    document = document_of(api)
    down = create_app(make_config(f"sqlite:///{tmp_path}/missing/identity.db"))
    down.test_client_class = HttpsClient
    calls = [("get", "/localapi/account"), ("post", "/localapi/password"), ("put", "/localapi/email"),
             ("post", "/localapi/email/verification"), ("get", "/localapi/sessions"), ("delete", "/localapi/sessions"),
             ("delete", "/localapi/sessions/app_x"), ("get", "/localapi/openapi.json")]
    with down.test_client() as client:
        for method, path in calls:
            response = getattr(client, method)(path, headers=bearer(api.token()), json={})
            assert response.status_code == 503, (method, path, response.status_code)
            assert response.headers["Retry-After"] == "5"
            check_response(document, method, path, response)


# --- PUT /localapi/email: the address's format is one the server's addresses fit -------------------


def test_an_address_with_an_international_domain_that_the_server_takes_fits_the_documented_format(api, mail):
    """The server takes an address whose domain is international (it mails the IDNA form); the
    document called the field `format: email` (RFC 5321, ASCII), so a client that checks formats
    refused before sending what the server accepts: it is `idn-email` (RFC 6531)."""
    document = document_of(api)
    body = {"email": "bob@b\u00fccher.example", "current_password": ALICE_PASSWORD}
    response = api.client.put("/localapi/email", headers=bearer(api.token()), json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    check_response(document, "put", "/localapi/email", response)
    assert schema_errors(document, {"$ref": "#/components/schemas/EmailChange"}, body) == []


# --- GET /localapi/sessions: what the list holds ----------------------------------------------------


def test_the_session_list_s_documented_description_says_it_is_capped(api):
    """The list shows at most 100 entries of each kind (docs/sessions.md); the document said
    "Every live entry", so an app that counted or ended them one by one from it missed the rest."""
    import time

    from sqlalchemy import insert, select

    from identity.extensions import db
    from identity.models import User, UserSession

    now = int(time.time())
    with api.app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.execute(insert(UserSession), [
            {"sid": f"{n:064x}", "public_sid": f"review{n}", "user_id": alice, "auth_time": now, "created_at": now,
             "last_seen_at": now - n} for n in range(101)])
        db.session.commit()
    document = document_of(api)
    response = api.client.get("/localapi/sessions", headers=bearer(api.token()))
    check_response(document, "get", "/localapi/sessions", response)
    assert len(response.get_json()) == 100  # the 101st, least recently used, is live but not listed
    description = document["paths"]["/localapi/sessions"]["get"]["responses"]["200"]["description"]
    assert "at most 100" in description, description


# --- POST /localapi/password: the new password's bounds ---------------------------------------------


def test_the_documented_new_password_names_its_upper_bound(api):
    """The document gave new_password maxLength 1024 (the input cap) and named only the lower
    bound, so a client that checked it sent 129 characters and met a 400: PASSWORD_MAX_LENGTH
    (default 128) must be in its description."""
    document = document_of(api)
    new = "tulip-quartz-harbor-917-" + "copper lantern orchard velvet anchor meadow " * 3  # 159 characters
    body = {"current_password": ALICE_PASSWORD, "new_password": new, "confirm_password": new}
    assert schema_errors(document, {"$ref": "#/components/schemas/PasswordChange"}, body) == []
    response = api.client.post("/localapi/password", headers=bearer(api.token()), json=body)
    check_response(document, "post", "/localapi/password", response)
    assert response.get_json()["errors"]["new_password"][0] == "Use at most 128 characters."
    description = document["components"]["schemas"]["PasswordChange"]["properties"]["new_password"]["description"]
    assert "PASSWORD_MAX_LENGTH (default 128)" in description, description


# --- 503, not an undocumented 500, while the rate limits' store is down ---------------------------


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/5",
                                         "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": False,
                                         "RATELIMIT_STORAGE_TIMEOUT_SECONDS": 0.2}])
def test_an_unreachable_rate_limit_store_without_fallback_is_a_documented_503(api, app_config):
    """With the in-memory fallback off, a request that must be counted while the store is down
    cannot be served: that is the service unavailable (503, Retry-After, as documented), not an
    internal error (500, in no operation of the document)."""
    document = document_of_without_limits()
    for method, path in [("get", "/localapi/account"), ("post", "/localapi/password"),
                         ("delete", "/localapi/sessions/app_x"), ("get", "/localapi/openapi.json")]:
        response = getattr(api.client, method)(path, headers=bearer(api.token()), json={})
        assert response.status_code == 503, (method, path, response.status_code)
        assert response.headers["Retry-After"] == "5"
        check_response(document, method, path, response)


def document_of_without_limits() -> dict:
    """The document as any process serves it (it depends on the code alone)."""
    from api.openapi import openapi_document

    return openapi_document()


# --- the rate-limit headers RATELIMIT_HEADERS_ENABLED adds -------------------------------------------

RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_HEADERS_ENABLED": True,
                                         "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_DEFAULT": "3 per minute"}])
def test_the_rate_limit_headers_the_server_sends_are_documented(api, app_config):
    """With RATELIMIT_HEADERS_ENABLED every answer carries X-RateLimit-* (docs/configuration.md),
    a 429 too; the document listed none, so a generated client had no typed access to them."""
    document = document_of_without_limits()
    token = api.token()
    for _ in range(4):  # 200, 200, 200, then the limit's 429
        response = api.client.get("/localapi/account", headers=bearer(token))
        assert all(name in response.headers for name in RATE_LIMIT_HEADERS), response.headers
        check_response(document, "get", "/localapi/account", response)
        assert undocumented_headers(document, "get", "/localapi/account", response, RATE_LIMIT_HEADERS) == []
    assert response.status_code == 429


# --- docs/local-api.md agrees with the document on who reads the document ---------------------------


@pytest.mark.database_independent
def test_the_docs_say_a_client_credentials_token_reads_the_document(api):
    """The document (and the server) let any token with the scope read /localapi/openapi.json, one
    issued to a client alone too (a generator's in CI); docs/local-api.md said such tokens get a
    403 problem, naming no exception."""
    from pathlib import Path

    service = api.token("IdentityServerApi", client_id="service", username=None)
    assert api.client.get("/localapi/openapi.json", headers=bearer(service)).status_code == 200
    assert api.client.get("/localapi/account", headers=bearer(service)).status_code == 403
    errors = Path(__file__).resolve().parent.parent.joinpath("docs", "local-api.md").read_text().split("## Errors")[1]
    forbidden = " ".join(errors.split("`403` problem for")[1].split("`429`")[0].split())
    assert "openapi.json" in forbidden, forbidden


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_HEADERS_ENABLED": True,
                                         "RATELIMIT_STORAGE_URI": "memory://"}])
def test_a_browser_app_can_read_the_documented_rate_limit_headers(api, app_config):
    """A single-page app (a registered CORS origin) calling the local API reads only the headers
    CORS exposes: the documented X-RateLimit-* were sent but hidden from its generated client."""
    response = api.client.get("/localapi/account", headers={**bearer(api.token()), "Origin": "http://127.0.0.1:8080"})
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {name.lower() for name in RATE_LIMIT_HEADERS} <= exposed, exposed
