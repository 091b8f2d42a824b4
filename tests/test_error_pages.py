"""The authorization and end-session endpoints are where a person's browser lands: their refusals
that come before the request is read (a method, a body too large, a rate limit) are pages for
people, as every other refusal there is, not the token endpoint's JSON."""

from urllib.parse import urlencode

import pytest

AUTHORIZE = "/connect/authorize?" + urlencode({"client_id": "web", "response_type": "code", "scope": "openid",
                                                "redirect_uri": "https://web.example.com/cb", "state": "s-1"})


def assert_page(response, status: int, words: str) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == status, f"{response.status_code}: {body[:300]}"
    assert response.mimetype == "text/html", f"a person was answered {response.mimetype}: {body[:300]}"
    assert words in body, body[:2000]
    assert "Traceback" not in body
    return body


@pytest.mark.database_independent
@pytest.mark.parametrize("path", ["/connect/authorize", "/connect/endsession"])
def test_a_wrong_method_at_a_browser_endpoint_is_a_page(client, flow_clients, path):
    response = client.put(path)
    assert_page(response, 405, "Method Not Allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


@pytest.mark.database_independent
@pytest.mark.parametrize("path", ["/connect/authorize", "/connect/endsession"])
def test_a_body_too_large_at_a_browser_endpoint_is_a_page(client, flow_clients, path):
    response = client.post(path, data={"state": "x" * (65 * 1024)})
    assert_page(response, 413, "too large")


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": "2 per minute"}])
@pytest.mark.parametrize("path", [AUTHORIZE, "/connect/endsession"])
def test_a_rate_limit_at_a_browser_endpoint_is_a_page(client, flow_clients, path):
    statuses = [client.get(path).status_code for _ in range(2)]
    assert 429 not in statuses, statuses
    response = client.get(path)
    assert_page(response, 429, "Too many requests")
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.database_independent
def test_the_token_endpoint_still_answers_json(client, flow_clients):
    response = client.put("/connect/token")
    assert response.status_code == 405 and response.get_json()["error"] == "invalid_request"
