"""Several tabs of one browser, the Back button and stale forms, in a real browser."""

import pytest

pytestmark = pytest.mark.browser


def test_sign_out_pressed_in_a_second_tab_after_the_first_signed_out_says_signed_out(ui, seeded, context):
    """Two tabs of the account pages; the person signs out in the first, then presses "Sign out" in
    the second, whose form was rendered for the session that just ended. The answer was a 400 page
    asking "Do you want to sign out?" of a browser that nobody is signed in to."""
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    second = context.new_page()
    second.goto(ui.url("/account/password"))
    assert second.locator("form.nav__signout button").is_visible()
    assert ui.sign_out().status == 200

    with second.expect_navigation(), second.expect_response(lambda r: r.request.method == "POST") as posted:
        second.locator("form.nav__signout button").click()

    assert posted.value.status == 200, posted.value.status
    assert second.get_by_role("heading", name="You are signed out.").is_visible(), second.locator("main").inner_text()


def test_a_stale_sign_out_button_after_a_new_sign_in_says_why_it_asks(ui, seeded, context):
    """The same, but the first tab has signed in again since: the second tab's old button ends
    nothing unasked (its CSRF token is of the ended session), and the page says why it asks."""
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    second = context.new_page()
    second.goto(ui.url("/account/password"))
    ui.sign_out()
    ui.sign_in(user["username"], user["password"])

    with second.expect_navigation(), second.expect_response(lambda r: r.request.method == "POST") as posted:
        second.locator("form.nav__signout button").click()

    assert posted.value.status == 400
    assert "before this browser last signed in" in " ".join(second.locator(".alert").all_inner_texts())
    ui.goto("/account/password")
    assert ui.signed_in_as() == user["name"], "nothing was ended unasked"
    with second.expect_navigation():
        second.locator("main button[type=submit]").click()
    assert second.get_by_role("heading", name="You are signed out.").is_visible()


def test_a_passkey_sign_in_from_a_tab_whose_page_expired_says_to_reload_it(ui, seeded, context):
    """Two tabs on the sign-in page; the person signs in with the password in the first, then
    presses "Sign in with a passkey" in the second. The options request carries the CSRF token of
    the page, which the first sign-in replaced: refused, and the page said "Passkeys are not
    available right now (400)." as if the server or the browser could not do passkeys."""
    user = seeded["users"][0]
    ui.goto("/account/login")
    second = context.new_page()
    second.goto(ui.url("/account/login"))
    passkey = second.locator("#passkey-signin button")
    assert passkey.is_visible()
    ui.sign_in(user["username"], user["password"], path=None)

    passkey.click()

    error = second.locator("#passkey-signin-error")
    error.wait_for(state="visible")
    assert "reload" in error.inner_text().lower(), error.inner_text()
    assert "not available" not in error.inner_text()
