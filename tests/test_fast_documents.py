"""Discovery and JWKS answered from the worker's cache without entering Flask, identically."""

import pytest

SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control")


@pytest.fixture
def app_config():
    return {"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}


def count_view_calls(app, endpoint):
    calls = []
    view = app.view_functions[endpoint]

    def counted(*args, **kwargs):
        calls.append(1)
        return view(*args, **kwargs)

    app.view_functions[endpoint] = counted
    return calls


@pytest.mark.parametrize("path,endpoint", [("/.well-known/openid-configuration", "discovery.openid_configuration"),
                                           ("/.well-known/openid-configuration/jwks", "discovery.jwks")])
def test_second_request_is_served_from_the_cache_with_the_same_answer(app, client, seeded, path, endpoint):
    calls = count_view_calls(app, endpoint)
    first = client.get(path)
    second = client.get(path)
    assert len(calls) == 1, "the second request should not reach the Flask view"
    assert first.status_code == second.status_code == 200
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]
    for name in SECURITY_HEADERS:
        assert first.headers[name] == second.headers[name], name
    assert second.headers["Content-Type"] == "application/json"
    assert second.headers["Strict-Transport-Security"]  # the test client speaks https
    assert second.headers["X-Request-Id"]
    not_modified = client.get(path, headers={"If-None-Match": second.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert len(calls) == 1


DOCUMENTS = ["/.well-known/openid-configuration", "/.well-known/openid-configuration/jwks"]
PUBLIC = {"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60, "ISSUER": "https://id.example.com"}


def through_flask(path: str) -> str:
    return path + "?v=1"  # a query string: the fast path leaves the request to the Flask view


@pytest.mark.parametrize("app_config", [PUBLIC])
@pytest.mark.parametrize("path", DOCUMENTS)
def test_a_publicly_cacheable_document_varies_on_origin_on_both_paths(app, client, seeded, path):
    """A shared cache must not answer a browser's CORS request with the copy made for a request
    without Origin (it has no Access-Control-Allow-Origin): every cacheable answer says Vary: Origin."""
    for how, url in (("the Flask view", through_flask(path)), ("the fast path", path)):
        for response in (client.get(url), client.get(url, headers={"If-None-Match": client.get(url).headers["ETag"]})):
            assert response.status_code in (200, 304)
            assert response.headers["Cache-Control"].startswith("public"), (how, dict(response.headers))
            assert [v.strip() for v in response.headers.get("Vary", "").split(",")] == ["Origin"], (how, dict(response.headers))
    cors = client.get(path, headers={"Origin": "http://127.0.0.1:8080"})  # the demo seed's SPA origin
    assert cors.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert cors.headers.getlist("Vary") == ["Origin"]


@pytest.mark.parametrize("app_config", [PUBLIC])
@pytest.mark.parametrize("path", DOCUMENTS)
@pytest.mark.parametrize("condition, status", [("weak", 304), ("star", 304), ("list", 304), ("other", 200)])
def test_if_none_match_is_compared_weakly_and_alike_on_both_paths(app, client, seeded, path, condition, status):
    """RFC 9110, 13.1.2: If-None-Match uses the weak comparison, and "*" matches any current answer."""
    etag = client.get(path).headers["ETag"]
    header = {"weak": "W/" + etag, "star": "*", "list": f'"other", {etag}', "other": '"other"'}[condition]
    fast = client.get(path, headers={"If-None-Match": header})
    view = client.get(through_flask(path), headers={"If-None-Match": header})
    assert (fast.status_code, view.status_code) == (status, status)
    assert fast.headers["ETag"] == view.headers["ETag"] == etag


def test_cors_requests_still_go_through_flask(app, client, flow_clients):
    calls = count_view_calls(app, "discovery.openid_configuration")
    client.get("/.well-known/openid-configuration")
    response = client.get("/.well-known/openid-configuration", headers={"Origin": "https://web.example.com"})
    assert len(calls) == 2
    assert response.headers["Access-Control-Allow-Origin"] == "https://web.example.com"


def test_each_host_gets_its_own_issuer(app, client, seeded):
    client.get("/.well-known/openid-configuration")
    other = client.get("/.well-known/openid-configuration", base_url="https://id.example.org")
    assert other.get_json()["issuer"] == "https://id.example.org"


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 60, "DISCOVERY_DOCUMENT_CACHE_SECONDS": 60, "TRUST_PROXY_HOPS": 1}])
def test_behind_a_trusted_proxy_the_forwarded_host_is_the_issuer(app, client, seeded):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example.com"}
    client.get("/.well-known/openid-configuration", headers=headers)
    cached = client.get("/.well-known/openid-configuration", headers=headers)
    assert cached.get_json()["issuer"] == "https://id.example.com"
