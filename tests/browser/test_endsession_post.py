"""RP-initiated logout by POST in a real browser: a client's auto-submitting logout form on another
site is a cross-site POST, which carries no SameSite=Lax cookie; the person must still be signed out."""

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import UserSession

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

CLIENT_SITE = "http://localhost:8089"  # another site than the server's 127.0.0.1
RETURN = "http://127.0.0.1:8080/"  # the spa client's registered post_logout_redirect_uri


def test_a_cross_site_logout_post_signs_the_person_out(ui, app, seeded):
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"], remember=True)
    assert ui.signed_in_as()
    form = (f'<!doctype html><title>app</title><form method="post" action="{ui.url("/connect/endsession")}">'
            '<input type="hidden" name="client_id" value="spa">'
            f'<input type="hidden" name="post_logout_redirect_uri" value="{RETURN}">'
            '<input type="hidden" name="state" value="st-1"><button id="sign-out">Sign out</button></form>')
    ui.page.route(CLIENT_SITE + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    ui.page.goto(CLIENT_SITE + "/")
    ui.page.click("#sign-out")
    # nothing listens on the return address: a redirect there ends on Chromium's error page
    ui.page.wait_for_url(lambda url: "/connect/endsession" in url or url.startswith("chrome-error:"), wait_until="commit")
    assert "/connect/endsession" in ui.page.url, "sent back to the client without signing the person out"
    ui.page.get_by_role("heading", name="Do you want to sign out?").wait_for()  # no hint: asked, signed in
    with ui.page.expect_request(lambda request: request.url.startswith(RETURN)) as back:
        ui.page.locator("main button[type=submit]").first.click()
    assert back.value.url == RETURN + "?state=st-1"
    ui.page.wait_for_url(lambda url: url.startswith("chrome-error:"), wait_until="commit")
    ui.goto("/")
    assert ui.signed_in_as() is None
    with app.app_context():
        assert [row.revoked_at is not None for row in db.session.scalars(select(UserSession))] == [True]
