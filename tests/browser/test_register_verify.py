"""Registering, confirming the address and changing it, in a real browser against the test SMTP server."""

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import Client

from .conftest import SPA_AUTHORIZE

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

PASSWORD = "juniper-falcon-ribbon-735"


@pytest.mark.parametrize("app_config", [{"REGISTRATION_ENABLED": True}])
def test_register_confirm_the_address_and_sign_in(ui, seeded, mail):
    ui.goto("/account/login")
    with ui.page.expect_navigation():
        ui.page.locator("#register-link").click()
    assert ui.page.get_by_role("heading", name="Create an account").is_visible()
    ui.assert_looks_finished()
    ui.assert_fits_width()

    ui.page.get_by_label("User name").fill("carol")
    ui.page.get_by_label("Email address").fill("carol@example.com")
    ui.page.get_by_label("Your name (optional)").fill("Carol Example")
    ui.page.get_by_label("Password", exact=True).fill(PASSWORD)
    ui.page.get_by_label("Confirm password").fill("not-the-same-password-1")
    posted = ui.submit_and_catch_post()
    assert posted.status == 400
    assert "does not match" in ui.page.content()
    ui.assert_looks_finished()

    ui.page.get_by_label("Password", exact=True).fill(PASSWORD)
    ui.page.get_by_label("Confirm password").fill(PASSWORD)
    posted = ui.submit_and_catch_post()
    assert posted.status == 200
    assert ui.page.get_by_role("heading", name="Check your email").is_visible()
    ui.assert_looks_finished()

    link = mail.link(mail.wait_for(to="carol@example.com"))
    assert link.startswith(ui.base_url + "/account/verify-email?token=")
    response = ui.goto(link)
    assert response.status == 200
    assert ui.page.get_by_role("heading", name="Your address is confirmed").is_visible()
    ui.assert_looks_finished()

    assert ui.sign_in("carol", PASSWORD).status == 302
    assert ui.signed_in_as() == "Carol Example"
    ui.goto("/account/email")
    assert ui.page.locator("#email-status").inner_text() == "confirmed"
    ui.assert_looks_finished()


def test_change_the_address_on_the_account_page(ui, seeded, mail):
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    ui.goto("/account/email")
    assert ui.page.locator("#email-status").inner_text() == "not confirmed yet"
    ui.page.get_by_label("New email address").fill("alice@example.org")
    ui.page.get_by_label("Current password").fill(user["password"])
    posted = ui.submit_and_catch_post("main form:last-of-type button[type=submit]")
    assert posted.status == 200
    assert "We sent a link to alice@example.org" in ui.alert_text()
    assert ui.page.locator("#pending-email").inner_text() == "alice@example.org"
    ui.assert_looks_finished()

    assert "requested" in mail.wait_for(to="alice@example.com")["Subject"]
    link = mail.link(mail.wait_for(to="alice@example.org"))
    ui.goto(link)
    assert "alice@example.org" in ui.page.locator("main").inner_text()
    ui.goto("/account/email")
    assert ui.page.locator("#current-email").inner_text() == "alice@example.org"
    assert ui.page.locator("#email-status").inner_text() == "confirmed"


def test_a_client_that_requires_a_verified_address_waits_for_it(app, ui, seeded, mail):
    with app.app_context():
        db.session.scalar(select(Client).where(Client.client_id == "spa")).require_verified_email = True
        db.session.commit()
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"], path=SPA_AUTHORIZE)
    assert "/account/email/required" in ui.page.url
    assert ui.page.get_by_role("heading", name="Confirm your email address").is_visible()
    assert "Single-Page App" in ui.page.locator("main").inner_text()
    ui.assert_looks_finished()
    ui.submit_and_catch_post()
    assert "We sent a link" in ui.alert_text()
    link = mail.link(mail.wait_for(to="alice@example.com"))

    other = ui.page.context.new_page()  # the mail opens in another tab
    other.goto(link)
    assert "confirmed" in other.locator("main").inner_text()
    other.close()

    with ui.page.expect_navigation():
        ui.page.locator("#continue").click()
    assert "/consent" in ui.page.url  # the spa asks for consent next: the sign-in went on
