"""Two-step sign-in in a real browser: set up an authenticator app from the QR page (codes
computed with pyotp from the secret the page shows, as a phone would), then sign in with a code,
and with a recovery code."""

import re
import time

import pyotp
import pytest

from .conftest import SPA_AUTHORIZE

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]


class StepClock:
    """The server's TOTP clock, stopped, and moved a 30-second step on instead of waiting (the
    live server runs in this process)."""

    def __init__(self):
        self.offset = 0
        self.base = int(time.time())

    def now(self) -> int:
        return self.base + self.offset


@pytest.fixture
def clock(monkeypatch):
    from identity.services import mfa

    clock = StepClock()
    monkeypatch.setattr(mfa, "code_time", clock.now)
    return clock


def test_set_up_an_authenticator_app_then_sign_in_with_a_code_and_a_recovery_code(ui, seeded, clock):
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    ui.goto("/account/mfa")
    ui.assert_looks_finished()
    assert ui.page.get_by_text("No authenticator app is set up.").is_visible()
    assert ui.submit_and_catch_post().status == 200  # "Set up an authenticator app"

    qr = ui.page.locator("#totp-qr svg")
    assert qr.is_visible() and qr.bounding_box()["width"] >= 100
    secret = ui.page.locator("#totp-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    ui.assert_looks_finished()  # the inline SVG breaks no Content-Security-Policy rule

    ui.page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).at(clock.now()))
    assert ui.submit_and_catch_post().status == 200
    assert "authenticator app is set up" in ui.alert_text()
    recovery = ui.page.locator("#recovery-codes code").all_inner_texts()
    assert len(recovery) == 10
    ui.assert_looks_finished()

    ui.sign_out()
    clock.offset += 30  # the enrolment used this step's code
    posted = ui.sign_in(user["username"], user["password"])
    assert posted.status == 302
    assert ui.page.url.startswith(ui.url("/account/login/mfa"))
    assert ui.signed_in_as() is None, "the password alone signs no one in"
    ui.assert_looks_finished()
    ui.page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(clock.now()))
    assert ui.submit_and_catch_post().status == 302
    assert ui.signed_in_as() == user["name"]

    ui.sign_out()
    ui.sign_in(user["username"], user["password"])
    ui.page.get_by_label("Code from your authenticator app").fill("000000")
    assert ui.submit_and_catch_post().status == 400
    assert "not right" in ui.alert_text()
    ui.page.get_by_label("Code from your authenticator app").fill(recovery[0])
    assert ui.submit_and_catch_post().status == 302
    assert ui.signed_in_as() == user["name"]
    ui.goto("/account/mfa")
    assert "9 of your recovery codes are unused" in ui.page.content()


def test_a_client_that_requires_two_steps_gets_the_person_back_after_the_set_up(ui, app, seeded, clock):
    """The "Two-step sign-in required" page sends the person to set up an app; once it is set up,
    the factors page leads back to the request (the browser's Back button cannot: the pages
    between are answers to form posts), and the request goes on with both factors."""
    from sqlalchemy import update

    from identity.extensions import db
    from identity.models import Client

    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "spa").values(require_mfa=True))
        db.session.commit()
        db.session.remove()
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"], path=SPA_AUTHORIZE)
    assert ui.page.get_by_role("heading", name="Two-step sign-in required").is_visible()
    with ui.page.expect_navigation():
        ui.page.get_by_role("link", name="Set up two-step sign-in").click()
    assert ui.submit_and_catch_post().status == 200  # "Set up an authenticator app"
    secret = ui.page.locator("#totp-secret").inner_text().strip()
    ui.page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).at(clock.now()))
    assert ui.submit_and_catch_post().status == 200
    assert ui.page.locator("#recovery-codes code").count() == 10

    back = ui.page.get_by_role("link", name="Continue to Single-Page App")
    assert back.count() == 1, "the factors page offers no way back to the request: " + ui.page.inner_text("main")
    with ui.page.expect_navigation():
        back.click()
    assert "/account/login" in ui.page.url, "signed in before the set-up: the request asks for both factors"
    clock.offset += 30
    ui.sign_in(user["username"], user["password"], path=None)
    ui.page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(clock.now()))
    ui.submit()
    assert "/consent" in ui.page.url, ui.page.url
