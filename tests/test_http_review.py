"""The HTTP semantics review: methods, statuses, media types and cache headers of the
protocol endpoints, the local API and the pages, as a client or a shared cache sees them."""

import base64

import pytest
from sqlalchemy import select

from conftest import BOB_PASSWORD
from identity.extensions import db
from identity.models import User

LEGACY = {"Authorization": "Basic " + base64.b64encode(b"legacy:legacy-secret-0123456789").decode()}


def failed_attempts(app, username="bob") -> int:
    with app.app_context():
        return db.session.scalar(select(User.failed_attempts).where(User.username == username))


# --- the token, revocation and introspection endpoints take form-urlencoded bodies only ---------


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/json", "text/plain"])
def test_password_grant_in_another_body_is_invalid_request_and_no_failed_sign_in(app, client, flow_clients, content_type):
    """RFC 6749 section 4.3.2: the parameters are form-urlencoded. A multipart body reached the
    grant through werkzeug's parser, where `password=` is an empty password, not an omitted one:
    a failed sign-in that counted toward bob's lockout (docs/endpoints.md says it is none)."""
    fields = {"grant_type": "password", "username": "bob", "password": "", "scope": "openid"}
    if content_type == "multipart/form-data":
        response = client.post("/connect/token", data=fields, headers=LEGACY, content_type=content_type)
    else:
        response = client.post("/connect/token", data="grant_type=password&username=bob&password=&scope=openid",
                               headers=LEGACY, content_type=content_type)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in body["error_description"]
    assert failed_attempts(app) == 0


def test_password_grant_in_multipart_issues_no_token(app, client, flow_clients):
    fields = {"grant_type": "password", "username": "bob", "password": BOB_PASSWORD, "scope": "openid"}
    response = client.post("/connect/token", data=fields, headers=LEGACY, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert "access_token" not in response.get_json()


@pytest.mark.parametrize("path", ["/connect/revocation", "/connect/introspect"])
def test_revocation_and_introspection_name_the_media_type(client, flow_clients, path):
    response = client.post(path, json={"token": "something"}, headers=LEGACY)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in response.get_json()["error_description"]


def test_form_bodies_with_a_charset_and_bodiless_posts_are_still_read(client, flow_clients):
    """A charset parameter is the same media type; a POST with no body at all has no media type to refuse."""
    form = client.post("/connect/token", data=f"grant_type=password&username=bob&password={BOB_PASSWORD}&scope=openid",
                       headers=LEGACY, content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert form.status_code == 200, form.get_json()
    bare = client.post("/connect/token", headers=LEGACY)
    assert bare.status_code == 400
    assert bare.get_json() == {"error": "invalid_request", "error_description": "grant_type is required"}


# --- a response parameter appears once, even where the registered URI's query names it ----------

QUERY_CLIENT = {"clients": [{
    "client_id": "tenant-app", "client_name": "Tenant App", "client_secrets": ["tenant-secret-0123456789"],
    "allowed_grant_types": ["authorization_code"], "require_pkce": False, "require_consent": False,
    "redirect_uris": ["https://tenant.example.com/cb?tenant=a&state=fixed&iss=x"],
    "post_logout_redirect_uris": ["https://tenant.example.com/bye?tenant=a&state=fixed"],
    "allowed_scopes": ["openid"]}]}


def seed_query_client(app):
    import json

    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(json.dumps(QUERY_CLIENT)))


def query_pairs(location: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(location).query, keep_blank_values=True)


@pytest.mark.parametrize("prompt", ["none", "bogus-response-type"])
def test_authorization_response_names_each_parameter_once(app, client, flow_clients, prompt):
    """RFC 6749 section 3.1: response parameters MUST NOT be included more than once. A registered
    redirect URI may carry a query (section 3.1.2, kept), and where it named `state` or `iss` the
    answer carried two of each: a client reading the first saw the registered value, not its own."""
    from urllib.parse import urlencode

    from actions import AuthActions

    seed_query_client(app)
    AuthActions(client).login()
    params = {"client_id": "tenant-app", "redirect_uri": QUERY_CLIENT["clients"][0]["redirect_uris"][0],
              "response_type": "code" if prompt == "none" else "bogus", "scope": "openid", "state": "mine",
              "prompt": "none"}
    response = client.get("/connect/authorize?" + urlencode(params))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    pairs = query_pairs(response.headers["Location"])
    names = [name for name, _ in pairs]
    assert sorted(names) == sorted(set(names)), pairs
    found = dict(pairs)
    assert found["state"] == "mine" and found["iss"] == "https://localhost" and found["tenant"] == "a"
    assert ("code" if prompt == "none" else "error") in found


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_empty_authorization_parameter_is_no_second_one(app, client, flow_clients, method):
    """RFC 6749 section 3.1: a parameter sent without a value is as if omitted. At the
    authorization endpoint `state=&state=mine` (a client that always writes every parameter, then
    the one it means) was refused as `state` repeated, and so was an empty query `state=` beside
    a POSTed body's. Now the request goes on, with the one value it has, and the answer carries it."""
    from urllib.parse import urlencode

    from actions import AuthActions

    seed_query_client(app)
    AuthActions(client).login()
    params = {"client_id": "tenant-app", "redirect_uri": QUERY_CLIENT["clients"][0]["redirect_uris"][0],
              "response_type": "code", "scope": "openid", "prompt": "none"}
    if method == "GET":
        response = client.get("/connect/authorize?" + urlencode(params) + "&state=&state=mine")
    else:
        response = client.post("/connect/authorize?state=", data={**params, "state": "mine"})
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    found = dict(query_pairs(response.headers["Location"]))
    assert "code" in found and found["state"] == "mine", found


def test_end_session_redirect_names_state_once(app, client, flow_clients):
    from urllib.parse import urlencode

    seed_query_client(app)
    uri = QUERY_CLIENT["clients"][0]["post_logout_redirect_uris"][0]
    response = client.get("/connect/endsession?" + urlencode(
        {"client_id": "tenant-app", "post_logout_redirect_uri": uri, "state": "mine"}))
    assert response.status_code == 302, response.get_data(as_text=True)
    pairs = query_pairs(response.headers["Location"])
    assert [value for name, value in pairs if name == "state"] == ["mine"], pairs
    assert ("tenant", "a") in pairs


# --- an error answer keeps the headers its status calls for ------------------------------------


def test_unsatisfiable_range_names_the_current_length(client):
    """RFC 9110 section 15.5.17: a 416 to a byte-range request SHOULD carry Content-Range with the
    representation's length (`bytes */304`), so the client can ask again. The error page that
    answers it dropped the header Werkzeug's exception carries."""
    whole = client.get("/favicon.ico")
    assert whole.status_code == 200
    response = client.get("/favicon.ico", headers={"Range": f"bytes={len(whole.data) + 100}-{len(whole.data) + 200}"})
    assert response.status_code == 416
    assert response.headers.get("Content-Range") == f"bytes */{len(whole.data)}"
    assert response.headers["Content-Type"].startswith("text/html")


def test_method_not_allowed_still_lists_the_methods(client):
    response = client.put("/connect/token")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["Content-Type"] == "application/json"


# --- a multipart part without a name is a 400 in the path's shape, not a 500 ------------------

NAMELESS_PARTS = [b"form-data", b'form-data; name="unterminated', b'form-data; filename="f.txt"']
SHAPES = [("/account/login", "text/html"), ("/connect/authorize", "text/html"),  # where browsers go: pages
          ("/connect/endsession", "text/html"), ("/connect/userinfo", "application/json"),
          ("/consent", "text/html"), ("/account/forgot-password", "text/html"),
          ("/localapi/password", "application/problem+json")]


@pytest.mark.parametrize("disposition", NAMELESS_PARTS)
@pytest.mark.parametrize(("path", "shape"), SHAPES)
def test_a_multipart_part_without_a_name_is_a_bad_request(client, flow_clients, path, shape, disposition):
    """Werkzeug files a part whose Content-Disposition names no field (none, or an unterminated
    quote) under the key None; the NUL check that reads every form field took `"\\x00" in None`
    (a TypeError) and CSRFProtect `None.endswith` (an AttributeError): a 500 and a traceback at
    every endpoint that reads a form."""
    body = b"--x\r\nContent-Disposition: " + disposition + b"\r\n\r\nvalue\r\n--x--\r\n"
    response = client.post(path, data=body, content_type="multipart/form-data; boundary=x")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.headers["Content-Type"].startswith(shape)
    assert "no name" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/connect/authorize", "/consent"])
def test_a_get_with_a_nameless_multipart_part_is_a_bad_request(client, flow_clients, path):
    """The authorization endpoint and the consent page read a GET's form body too (Authlib's values)."""
    from actions import AuthActions

    AuthActions(client).login()
    body = b"--x\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--x--\r\n"
    response = client.get(path + "?client_id=web", data=body, content_type="multipart/form-data; boundary=x")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]


# --- a parameter sent without a value is as if omitted, in the query too -------------------------


SERVICE = {"Authorization": "Basic " + base64.b64encode(b"service:service-secret-change-me").decode()}


@pytest.mark.parametrize("path", ["/connect/token", "/connect/revocation"])
def test_an_empty_query_parameter_is_no_second_one(client, flow_clients, path):
    """RFC 6749 section 3.1: a parameter sent without a value is as if omitted (docs/endpoints.md
    says so of these endpoints). The body's were dropped, but an empty one in the query still
    counted, so `?scope=` beside the body's scope was refused as a parameter sent twice."""
    name = "scope" if path == "/connect/token" else "token"
    body = {"grant_type": "client_credentials", "scope": "IdentityServerApi"} if name == "scope" else {"token": "unknown"}
    response = client.post(f"{path}?{name}=", data=body, headers=SERVICE)
    assert response.status_code == 200, response.get_json()
    twice = client.post(f"{path}?{name}=x", data=body, headers=SERVICE)
    assert twice.status_code == 400 and "repeated" in twice.get_json()["error_description"]


# --- HEAD is GET without the body -------------------------------------------------------------


def test_head_of_a_reset_link_answers_as_its_get(app, client, seeded, mail):
    """RFC 9110 section 9.3.2: HEAD answers as GET would, without the content. The reset page took
    any request but a GET for the form's post: a HEAD of a working link (a mail scanner's probe)
    was a 400 "Enter the new password twice" page, and of a dead one the form, not its notice."""
    from test_recovery import local, reset_link

    link = local(reset_link(app, client, mail))
    for url in (link, "/account/reset-password?token=not-a-link"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code, url
        assert head.headers["Content-Length"] == got.headers["Content-Length"], url
        assert head.data == b""
    assert client.get(link).status_code == 200  # the HEAD spent nothing


def test_head_of_the_sign_in_page_answers_as_its_get(client, flow_clients):
    """The sign-in page fills the user name from the pending request's login_hint on a GET only."""
    from urllib.parse import urlencode

    url = "/account/login?" + urlencode({"returnUrl": "/connect/authorize?" + urlencode(
        {"client_id": "web", "login_hint": "bob@example.com"})})
    got, head = client.get(url), client.head(url)
    assert "bob@example.com" in got.get_data(as_text=True)
    assert head.status_code == got.status_code
    assert head.headers["Content-Length"] == got.headers["Content-Length"]


# --- a file where a form takes text is a 400, not a 500 -------------------------------------------


@pytest.mark.parametrize(("path", "field"), [("/account/login", "username"), ("/account/login", "password"),
                                             ("/account/forgot-password", "username"),
                                             ("/account/reset-password?token=x", "new_password"),
                                             ("/account/reset-password?token=x", "token")])
def test_a_file_in_place_of_a_text_field_is_a_bad_request(client, flow_clients, path, field):
    """No form here takes a file. Flask-WTF hands the forms request.files with request.form, so a
    multipart file part named as a text field reached a Length validator as a FileStorage:
    `len(FileStorage)`, a TypeError, a 500 and a traceback (with the page's own CSRF token, which
    anyone gets by opening the page; the reset page, exempt from the app-wide check, without)."""
    import io

    from conftest import CSRF_RE

    found = CSRF_RE.search(client.get(path).get_data(as_text=True))  # the dead link's page has no form
    fields = {"csrf_token": (found.group(1) or found.group(2)) if found else "none", "username": "bob", "password": "x" * 20,
              "new_password": "x" * 20, "confirm_password": "x" * 20, "token": "x"}
    fields[field] = (io.BytesIO(b"not text"), "file.txt")
    response = client.post(path, data=fields, content_type="multipart/form-data")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.headers["Content-Type"].startswith("text/html")
