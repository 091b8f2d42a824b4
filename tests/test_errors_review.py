"""Review from outside: every error a client receives, against the specs' grammar.

RFC 6749 sections 4.1.2.1 and 5.2, RFC 6750 section 3, RFC 9207 and RFC 9457, as a strict client
or resource server parses the answers (docs/endpoints.md).
"""

import re
from urllib.parse import urlencode

import pytest

from actions import redirect_params

# RFC 6749 section 5.2: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )
DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


def authorize(client, **params):
    return client.get("/connect/authorize?" + urlencode(params))


# --- the authorization endpoint ----------------------------------------------------------------


@pytest.mark.database_independent
@pytest.mark.parametrize("response_type", ["token", 'to"k\\en\u2026'])
def test_an_unsupported_response_type_is_described_for_the_client(client, flow_clients, response_type):
    """Authlib 1.9 builds UnsupportedResponseTypeError with its sentence where the response type
    goes and the response type where the description goes: the client was told
    `error_description=token` (or `???`), which names nothing that went wrong."""
    response = authorize(client, client_id="web", response_type=response_type, scope="openid", state="s-1",
                         redirect_uri="https://web.example.com/cb")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params["error"] == "unsupported_response_type"
    assert params["state"] == "s-1" and params["iss"] == "https://localhost"
    description = params["error_description"]
    assert DESCRIPTION.fullmatch(description), description
    assert "response_type" in description and "not supported" in description, description


@pytest.mark.database_independent
def test_an_unsupported_response_type_of_an_unknown_client_reads_as_a_sentence(client, flow_clients):
    """Without a client to redirect to, the page shows the description: it read
    "response_type=The response type 'token' is not supported by the server. is not supported"."""
    response = authorize(client, client_id="nobody", response_type="token", scope="openid", state="s")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "is not supported by the server. is not supported" not in page
    assert "response_type token is not supported" in page



@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("name", ["state", "nonce", "login_hint"])
def test_a_nul_in_an_authorization_request_is_sent_to_the_client(client, flow_clients, method, name):
    """RFC 6749 4.1.2.1: a malformed request whose redirect URI is valid is answered to the client,
    invalid_request with its state, as a repeated parameter is. A NUL character was answered to the
    browser instead, in the token endpoint's JSON, and the client never heard back."""
    params = {"client_id": "web", "response_type": "code", "scope": "openid", "state": "s-1",
              "redirect_uri": "https://web.example.com/cb", name: "a\x00b"}
    if method == "GET":
        response = authorize(client, **params)
    else:  # cookieless, the POST is first posted again by this site's page (web/connect.py), as a browser does
        page = client.post("/connect/authorize", data=params)
        assert page.status_code == 200 and 'name="posted_again" value="1"' in page.get_data(as_text=True)
        response = client.post("/connect/authorize", data=params | {"posted_again": "1"})
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:200])
    location = response.headers["Location"]
    assert location.startswith("https://web.example.com/cb?")
    answer = redirect_params(location)
    assert answer["error"] == "invalid_request"
    assert answer["error_description"] == "A parameter contains a NUL character."
    assert answer["iss"] == "https://localhost"
    assert answer["state"] == params["state"]
    assert "code" not in answer


@pytest.mark.parametrize("query", [{"client_id": "we\x00b", "redirect_uri": "https://web.example.com/cb"},
                                   {"client_id": "web", "redirect_uri": "https://web.example.com/cb\x00"}])
def test_a_nul_in_the_client_or_its_redirect_uri_is_an_error_page(client, flow_clients, query):
    """Without a client and a registered redirect URI there is nobody to tell: a page, never a redirect."""
    response = authorize(client, response_type="code", scope="openid", state="s", **query)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert "A parameter contains a NUL character." in response.get_data(as_text=True)

# --- challenges (RFC 9110 section 11) -----------------------------------------------------------

TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
AUTH_PARAM = re.compile(rf"\s*({TOKEN})\s*=\s*({TOKEN}|{QUOTED})\s*(?:,|$)")


def challenge_params(header: str) -> tuple[str, dict]:
    """The scheme and auth-params of one challenge, read as RFC 9110 section 11.2 writes them;
    AssertionError where the header does not follow that grammar."""
    scheme, _, rest = header.partition(" ")
    params, position = {}, 0
    while position < len(rest):
        match = AUTH_PARAM.match(rest, position)
        assert match, f"not an auth-param at {rest[position:]!r} in {header!r}"
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
        position = match.end()
    return scheme, params


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"ISSUER": 'https://id.example.com/tenants/a\\'},
                                        {"ISSUER": 'https://id.example.com/"a"'}])
def test_the_basic_realm_is_the_issuer_as_a_quoted_string(client, flow_clients, app_config):
    """The realm is the issuer in a quoted-string: a backslash in it was written as it was, so one
    at its end escaped the closing quote and the whole challenge became unreadable."""
    response = client.post("/connect/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic bm9ib2R5Ong="})  # nobody:x
    assert response.status_code == 401
    scheme, params = challenge_params(response.headers["WWW-Authenticate"])
    assert scheme == "Basic"
    assert params["realm"] == app_config["ISSUER"]
    assert params["error"] == "invalid_client"


# --- the end-session endpoint -------------------------------------------------------------------


@pytest.mark.parametrize("query, expected", [
    ({"client_id": "nobody", "post_logout_redirect_uri": "https://web.example.com/bye"},
     "The client this request names is not registered."),
    ({"post_logout_redirect_uri": "https://web.example.com/bye"}, "needs an id_token_hint or client_id"),
])
def test_an_unknown_client_at_end_session_is_named_as_unknown(client, flow_clients, query, expected):
    """An unknown client_id beside a post_logout_redirect_uri was told "A post_logout_redirect_uri
    needs an id_token_hint or client_id.": the client_id it had sent was not named as the problem,
    as the other endpoints name an unknown client."""
    response = client.get("/connect/endsession?" + urlencode(query))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert expected in response.get_data(as_text=True)
