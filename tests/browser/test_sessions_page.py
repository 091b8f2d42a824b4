"""The sessions and devices page in a real browser: this browser marked, another browser and two
apps listed; ending one app, then everything else, and what that does to their cookies and tokens."""

import pytest
import requests

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

LEGACY = ("legacy", "legacy-secret-0123456789")  # conftest's FLOW_CLIENTS: the password grant with refresh tokens
SCOPE = "openid IdentityServerApi offline_access"


def app_grant(base: str, password: str) -> dict:
    response = requests.post(base + "/connect/token", auth=LEGACY, timeout=30, headers={"User-Agent": "okhttp/4.12.0"},
                             data={"grant_type": "password", "username": "alice", "password": password, "scope": SCOPE})
    assert response.status_code == 200, response.text
    return response.json()


def refresh_refused(base: str, refresh_token: str) -> bool:
    response = requests.post(base + "/connect/token", auth=LEGACY, timeout=30,
                             data={"grant_type": "refresh_token", "refresh_token": refresh_token})
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


def account_status(base: str, access_token: str) -> int:
    return requests.get(base + "/localapi/account", headers={"Authorization": f"Bearer {access_token}"},
                        timeout=30).status_code


def entries(page) -> list[str]:
    return page.locator("#sessions > li").evaluate_all("items => items.map(i => i.dataset.entry)")


def test_list_end_one_then_all_others(ui, browser, flow_clients, seeded, live_server):
    user = seeded["users"][0]
    base = live_server.url
    ui.sign_in(user["username"], user["password"])
    other_browser = browser.new_context(user_agent="Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                                                   "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36")
    try:
        other = other_browser.new_page()
        other.goto(base + "/account/login")
        other.get_by_label("User name or email").fill(user["username"])
        other.get_by_label("Password", exact=True).fill(user["password"])
        with other.expect_navigation():
            other.get_by_role("button", name="Sign in", exact=True).click()
        first_app, second_app = app_grant(base, user["password"]), app_grant(base, user["password"])

        # the home page links to the page; this browser comes first, marked
        ui.goto("/")
        with ui.page.expect_navigation():
            ui.page.get_by_role("link", name="See where you are signed in").click()
        assert ui.page.url == ui.url("/account/sessions")
        ui.assert_looks_finished()
        listed = entries(ui.page)
        assert len(listed) == 4
        current = ui.page.locator("#sessions > li").first
        assert current.get_attribute("data-current") == "true"
        assert "This browser" in current.inner_text() and "Chrome on Linux" in current.inner_text()
        assert current.locator("button").count() == 0  # this browser signs out with "Sign out" in the header
        assert ui.page.get_by_text("Chrome on Android").is_visible()
        assert ui.page.locator("#sessions > li", has_text="Legacy App").count() == 2

        # end one app: its refresh token and access token stop working; the other app keeps going
        app_items = ui.page.locator("#sessions > li[data-kind=app]")
        ended = app_items.first.get_attribute("data-entry")
        response = ui.submit(f'#sessions > li[data-entry="{ended}"] button')
        assert response.status == 200 and ui.page.url == ui.url("/account/sessions")
        assert "Signed out." in ui.alert_text()
        assert ended not in entries(ui.page) and len(entries(ui.page)) == 3
        results = [(refresh_refused(base, g["refresh_token"]), account_status(base, g["access_token"]))
                   for g in (first_app, second_app)]
        assert sorted(results) == [(False, 200), (True, 401)]

        # end everything else: the other browser's cookie and the last app's tokens stop working
        ui.submit("#end-others")
        assert "Signed out everywhere else" in ui.alert_text()
        assert len(entries(ui.page)) == 1
        assert ui.page.get_by_text("You are signed in only here.").is_visible()
        other.goto(base + "/account/sessions")
        assert "/account/login" in other.url
        for g in (first_app, second_app):
            assert refresh_refused(base, g["refresh_token"])
            assert account_status(base, g["access_token"]) == 401
        ui.goto("/account/sessions")
        assert ui.page.url == ui.url("/account/sessions"), "this browser stays signed in"
    finally:
        other_browser.close()


def test_the_page_fits_a_phone(ui, browser, seeded, live_server):
    user = seeded["users"][0]
    ui.page.set_viewport_size({"width": 360, "height": 740})
    ui.sign_in(user["username"], user["password"])
    ui.goto("/account/sessions")
    ui.assert_looks_finished()
    ui.assert_fits_width()
