"""Served behind a TLS-terminating reverse proxy, with an issuer that has a path
(docs/deployment.md, "Behind a reverse proxy"; docs/configuration.md, FLASK_ISSUER)."""

from urllib.parse import urlsplit

import pytest

PATH_ISSUER = "https://login.example.com/identity"
# what the docs' nginx block sends for https://login.example.com/... ("location /", the path passed on unchanged)
PROXY = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "login.example.com",
         "X-Forwarded-Port": "443"}
UPSTREAM = "http://127.0.0.1:8000"


def _via_proxy(client, method, url, **kwargs):
    """A request as the proxy passes it on: the public URL's path, unchanged, to the upstream."""
    path = urlsplit(url)
    target = path.path + ("?" + path.query if path.query else "")
    return client.open(target, method=method, base_url=UPSTREAM, headers=kwargs.pop("headers", PROXY),
                       **kwargs)


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "ISSUER": PATH_ISSUER}])
def test_an_issuer_with_a_path_serves_its_discovery_document_and_every_endpoint_it_names(app, seeded):
    """FLASK_ISSUER https://login.example.com/identity is accepted (test_config.py), and discovery
    names every endpoint under it; the proxy passes the whole host on (`location /`, as the docs
    say). OpenID Connect Discovery 1.0 section 4: the document is at the issuer plus
    /.well-known/openid-configuration. Each of those URLs was a 404: the server answered at the
    root only."""
    client = app.test_client()
    found = _via_proxy(client, "GET", PATH_ISSUER + "/.well-known/openid-configuration")
    assert found.status_code == 200, f"discovery at the issuer's path: {found.status_code}"
    doc = found.get_json()
    assert doc["issuer"] == PATH_ISSUER
    jwks = _via_proxy(client, "GET", doc["jwks_uri"])
    assert jwks.status_code == 200 and jwks.get_json()["keys"], f"jwks_uri: {jwks.status_code}"
    # the protocol endpoints answer as themselves (an OAuth error), not "nothing at this address"
    token = _via_proxy(client, "POST", doc["token_endpoint"], data={"grant_type": "client_credentials"})
    assert token.status_code == 401 and token.get_json()["error"] == "invalid_client", token.status_code
    for name in ("revocation_endpoint", "introspection_endpoint"):
        answer = _via_proxy(client, "POST", doc[name], data={"token": "x"})
        assert answer.status_code == 401, f"{name}: {answer.status_code}"
    userinfo = _via_proxy(client, "GET", doc["userinfo_endpoint"])
    assert userinfo.status_code == 401 and "Bearer" in userinfo.headers["WWW-Authenticate"], userinfo.status_code
    authorize = _via_proxy(client, "GET", doc["authorization_endpoint"] + "?client_id=spa&response_type=code"
                           "&scope=openid&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback"
                           "&code_challenge=" + "a" * 43 + "&code_challenge_method=S256")
    assert authorize.status_code == 302 and "/account/login?" in authorize.headers["Location"], authorize.status_code
    ended = _via_proxy(client, "GET", doc["end_session_endpoint"])
    assert ended.status_code in (200, 302), f"end_session_endpoint: {ended.status_code}"


# --- a real gunicorn, as deployed: requests from the proxy's address (127.0.0.1) ---------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    from servers import GunicornServer

    folder = tmp_path_factory.mktemp("subpath-gunicorn")
    with GunicornServer("sqlite:///" + str(folder / "identity.db"), workers=1, name="subpath", log_dir=folder,
                        issuer="http://login.example.com", env={"FLASK_TRUST_PROXY_HOPS": "1"}) as server:
        yield server


def _raw_get(server, path: str, headers: dict) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.server
@pytest.mark.database_independent
@pytest.mark.parametrize("prefix", ["/account", "/elsewhere"])
def test_a_script_name_header_passed_on_by_the_proxy_does_not_move_the_server(gunicorn_server, prefix):
    """deployment.md: X-Forwarded-Prefix is not read, the server answers at the root of its host
    (a proxy that does not set it passes on the client's own). gunicorn read a `SCRIPT_NAME`
    header from the proxy's address (FORWARDED_ALLOW_IPS, 127.0.0.1 by default; its default
    forwarder_headers) and moved the app under it for that request: a proxy that passes on
    headers with an underscore (Traefik, HAProxy; nginx drops them) let any client turn the
    sign-in page into a 404, or into gunicorn's 500 "Configuration problem" page."""
    status, body = _raw_get(gunicorn_server, "/account/login", {**PROXY, "SCRIPT_NAME": prefix})
    assert status == 200 and b'name="csrf_token"' in body, f"SCRIPT_NAME {prefix}: {status} {body[:120]!r}"


PORT_ISSUER = "https://login.example.com:8443"
# the docs' nginx block in a container that listens on 443, published on 8443: $host has no
# port, $server_port is the container's
REMAPPED = {**PROXY, "X-Forwarded-Port": "443"}


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "ISSUER": PORT_ISSUER}])
def test_a_form_posted_from_the_issuers_own_origin_is_accepted_on_a_non_default_port(app, seeded):
    """FLASK_ISSUER https://login.example.com:8443 is the provider's public origin; a browser on
    it sends Referer https://login.example.com:8443/... Behind the docs' nginx block (Host and
    X-Forwarded-Host $host, without the port; X-Forwarded-Port $server_port, 443 inside a
    container published on 8443), Flask-WTF's HTTPS referrer check compared it with the host the
    proxy named and refused every form: the sign-in page answered 400 "The referrer does not
    match the host.", though the referrer was the issuer's own origin."""
    from conftest import ALICE_PASSWORD, csrf_token

    client = app.test_client()
    login = PORT_ISSUER + "/account/login"
    page = _via_proxy(client, "GET", login, headers=REMAPPED)
    assert page.status_code == 200
    posted = _via_proxy(client, "POST", login, headers={**REMAPPED, "Referer": login},
                        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "alice",
                              "password": ALICE_PASSWORD})
    refused = "The referrer does not match the host."
    assert posted.status_code == 302, f"sign-in from the issuer's origin: {posted.status_code}" + \
        (f" {refused}" if refused in posted.get_data(as_text=True) else "")
    # another origin is still refused
    page = _via_proxy(client, "GET", login, headers=REMAPPED)
    foreign = _via_proxy(client, "POST", login, headers={**REMAPPED, "Referer": "https://login.example.com:9443/x"},
                         data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "alice",
                               "password": ALICE_PASSWORD})
    assert foreign.status_code == 400


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "ISSUER": PORT_ISSUER}])
@pytest.mark.parametrize("referrer", [PORT_ISSUER + "/account", "https://login.example.com/account", None])
def test_the_token_endpoint_and_the_local_api_stay_exempt_from_the_forms_check_whatever_the_referrer(app, seeded, referrer):
    """The token endpoint and the local API take no form token (a client or a bearer token
    authenticates them). A page of the issuer's own origin calling them sends its Referer: the
    issuer-origin branch of the forms' check took them for forms and refused them without a CSRF
    token, 400 "The form expired or was not sent from this site"."""
    import base64

    client = app.test_client()
    headers = {**REMAPPED, **({"Referer": referrer} if referrer else {}),
               "Authorization": "Basic " + base64.b64encode(b"service:service-secret-change-me").decode()}
    token = _via_proxy(client, "POST", PORT_ISSUER + "/connect/token", headers=headers,
                       data={"grant_type": "client_credentials", "scope": "IdentityServerApi"})
    assert token.status_code == 200, f"token endpoint with Referer {referrer}: {token.status_code} {token.get_data(as_text=True)[:200]}"
    headers["Authorization"] = "Bearer " + token.get_json()["access_token"]
    api = _via_proxy(client, "POST", PORT_ISSUER + "/localapi/password", headers=headers, json={})
    assert "The form expired" not in api.get_data(as_text=True), f"local API with Referer {referrer}: {api.status_code}"
    assert api.status_code in (400, 401, 403), api.status_code


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1, "ISSUER": "https://login.example.com/connect"}])
def test_an_issuer_whose_path_is_one_of_the_servers_own_keeps_the_root_paths(app, seeded):
    """An issuer at https://login.example.com/connect: its endpoints are /connect/connect/...,
    and the server's own /connect/authorize (where a sign-in resumes) and /connect/token still
    answer at the root."""
    client = app.test_client()
    doc = _via_proxy(client, "GET", "https://login.example.com/connect/.well-known/openid-configuration").get_json()
    assert doc["token_endpoint"] == "https://login.example.com/connect/connect/token"
    for url in (doc["token_endpoint"], "https://login.example.com/connect/token"):
        answer = _via_proxy(client, "POST", url, data={"grant_type": "client_credentials"})
        assert answer.status_code == 401, f"{url}: {answer.status_code}"
    resumed = _via_proxy(client, "GET", "https://login.example.com/connect/authorize?client_id=spa")
    assert resumed.status_code != 404
