"""Forgot password and reset in a real browser: the pages look finished, the mail's link opens
the reset page, its form posts without a Referer (the page's policy is no-referrer) and still
succeeds, and the new password signs in."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

NEW_PASSWORD = "orchid-lantern-basalt-7312"


def test_forgot_password_then_reset_then_sign_in(ui, seeded, mail):
    user = seeded["users"][0]
    ui.goto("/account/login")
    with ui.page.expect_navigation():
        ui.page.get_by_role("link", name="Forgot your password?").click()
    assert ui.page.get_by_role("heading", name="Forgot your password?").is_visible()
    ui.assert_looks_finished()
    ui.page.get_by_label("User name or email").fill(user["username"])
    posted = ui.submit_and_catch_post()
    assert posted.status == 200
    assert ui.page.get_by_role("heading", name="Check your mail").is_visible()
    ui.assert_looks_finished()

    link = mail.link(mail.wait_for(to=user["email"]))
    assert link.startswith(ui.url("/account/reset-password?token="))
    opened = ui.goto(link)
    assert opened.status == 200 and opened.headers["referrer-policy"] == "no-referrer"
    assert ui.page.get_by_role("heading", name="Choose a new password").is_visible()
    ui.assert_looks_finished()
    ui.assert_fits_width()
    ui.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    posted = ui.submit_and_catch_post()
    assert posted.status == 302, ui.page.content()
    assert "referer" not in posted.request.all_headers(), posted.request.all_headers()  # the browser kept the link to itself
    assert ui.page.url == ui.url("/account/login")
    assert "Your password was changed" in ui.alert_text()
    ui.assert_looks_finished()

    assert ui.sign_in(user["username"], user["password"]).status == 400, "the old password still signs in"
    assert ui.sign_in(user["username"], NEW_PASSWORD).status == 302
    assert ui.signed_in_as() == user["name"]


def test_a_used_or_broken_link_explains_itself(ui, seeded):
    response = ui.goto("/account/reset-password?token=not-a-real-token")
    assert response.status == 400
    assert ui.page.get_by_role("heading", name="This link cannot be used").is_visible()
    assert "not valid" in ui.alert_text()
    ui.assert_looks_finished()
    with ui.page.expect_navigation():
        ui.page.get_by_role("link", name="Send a new link").click()
    assert ui.page.get_by_role("heading", name="Forgot your password?").is_visible()
