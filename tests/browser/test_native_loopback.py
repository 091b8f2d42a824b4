"""A native app's IP-v6 loopback redirect URI (RFC 8252 section 7.3: `http://[::1]:{port}/cb`, any
port) in a real browser: the sign-in form's post must be allowed to end at the app.

Nothing listens on the app's port: a route answers the browser's requests to it, and the test
waits for the URL the post's redirect reaches (as tests/browser/test_authorize.py explains).
"""

from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import ALICE_PASSWORD
from native_review_support import apply, authorize_query

# the page's Content-Security-Policy decides it: no database can change the outcome
pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

APP = "http://[::1]:51234"


def test_a_native_app_on_ipv6_loopback_gets_its_code_after_the_sign_in_form(ui, app, seeded):
    """The sign-in page named `http://[::1]:51234` in form-action, a source CSP cannot express:
    Chromium ignored it and blocked the redirect that ends the post, so the app never got its code."""
    apply(app)
    landed = []

    def app_page(route):
        landed.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>App</title><h1>App</h1>")

    ui.page.route(lambda url: url.startswith(APP + "/"), app_page)
    url, _ = authorize_query(APP + "/cb")
    ui.goto(url)
    ui.fill_sign_in("alice", ALICE_PASSWORD)
    ui.page.locator("main button[type=submit]").first.click()
    try:
        ui.page.wait_for_url(lambda reached: reached.startswith(APP + "/cb?"), timeout=10_000)
    except Exception:
        pass
    assert ui.page.url.startswith(APP + "/cb?"), (
        f"the sign-in post did not end at the app: the browser is at {ui.page.url}")
    answer = parse_qs(urlsplit(ui.page.url).query)
    assert answer["state"] == ["app-state"] and answer["code"][0], answer
    assert landed and landed[-1] == ui.page.url
