"""Signing in and out in a real browser, and how the pages look while doing it."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

NEW_PASSWORD = "violet-anchor-meadow-482"


def alice(seeded) -> tuple[str, str, str]:
    user = seeded["users"][0]
    return user["username"], user["password"], user["name"]


def test_sign_in_shows_the_user_and_the_pages_look_finished(ui, seeded):
    username, password, name = alice(seeded)
    response = ui.goto("/account/login")
    assert response.status == 200
    ui.assert_looks_finished()
    assert ui.page.get_by_role("heading", name="Sign in").is_visible()

    posted = ui.sign_in(username, password, path=None)
    assert posted.status == 302, posted.status
    assert ui.page.url == ui.url("/")
    assert ui.signed_in_as() == name
    ui.assert_looks_finished()


def test_wrong_password_is_a_clear_error_on_a_styled_page(ui, seeded):
    username, _, _ = alice(seeded)
    posted = ui.sign_in(username, "not-the-password-at-all")
    assert posted.status == 400
    assert "incorrect" in ui.alert_text()
    assert ui.page.locator(".alert--error").is_visible()
    assert ui.signed_in_as() is None
    ui.assert_looks_finished()


def test_change_password_sign_out_and_sign_in_with_the_new_one(ui, seeded):
    username, password, name = alice(seeded)
    ui.sign_in(username, password)
    ui.goto("/account/password")
    ui.assert_looks_finished()
    ui.page.get_by_label("Current password").fill(password)
    ui.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    posted = ui.submit_and_catch_post()
    assert posted.status == 200, ui.page.content()
    assert "password was changed" in ui.alert_text()
    assert ui.signed_in_as() == name, "the session that changed the password stays signed in"

    posted = ui.sign_out()
    assert posted.status == 200
    assert ui.page.get_by_role("heading", name="You are signed out.").is_visible()
    ui.assert_looks_finished()
    ui.goto("/")
    assert ui.signed_in_as() is None

    assert ui.sign_in(username, password).status == 400, "the old password still signs in"
    assert ui.signed_in_as() is None
    assert ui.sign_in(username, NEW_PASSWORD).status == 302
    assert ui.signed_in_as() == name


def test_password_form_shows_the_policy_errors(ui, seeded):
    username, password, _ = alice(seeded)
    ui.sign_in(username, password)
    ui.goto("/account/password")
    ui.page.get_by_label("Current password").fill(password)
    ui.page.get_by_label("New password", exact=True).fill("short")
    ui.page.get_by_label("Confirm new password").fill("different")
    posted = ui.submit_and_catch_post()
    assert posted.status == 400
    errors = ui.page.locator(".field-errors")
    assert errors.count() >= 2, "both the policy and the confirmation errors are shown"
    assert errors.first.is_visible()
    ui.assert_looks_finished()


def test_sign_out_page_asks_first(ui, seeded):
    username, password, _ = alice(seeded)
    ui.sign_in(username, password)
    ui.goto("/account/logout")
    ui.assert_looks_finished()
    assert ui.signed_in_as() is not None, "GET alone does not sign out"
    ui.submit()
    ui.goto("/diagnostics")
    assert "/account/login" in ui.page.url, "a signed-out browser is sent to sign in"


def test_pages_fit_a_phone_screen(ui, seeded):
    username, password, _ = alice(seeded)
    ui.page.set_viewport_size({"width": 360, "height": 740})
    ui.goto("/account/login")
    ui.assert_fits_width()
    ui.sign_in(username, password)
    for path in ("/", "/account/password", "/account/grants", "/diagnostics", "/account/logout", "/nowhere"):
        ui.goto(path)
        ui.assert_looks_finished()
        ui.assert_fits_width()
