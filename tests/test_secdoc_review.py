"""docs/security.md read as a contract: each test holds the code to one of its sentences, on a
path where the promise had not been kept."""

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from actions import AuthActions, OAuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.services import mail as mail_service

ALICE_MAIL = "alice@example.com"
NEW_PASSWORD = "saffron-glacier-ribbon-6402"


def reset_link(app, client, mail) -> str:
    """A password reset link for alice, as mailed (read from the test SMTP server)."""
    page = client.get("/account/forgot-password")
    asked = client.post("/account/forgot-password",
                        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "alice"})
    assert asked.status_code == 200, asked.status_code
    with app.app_context():
        assert mail_service.wait_until_sent()
    link = mail.link(mail.wait_for(to=ALICE_MAIL))
    parts = urlsplit(link)
    return parts.path + "?" + parts.query


def test_the_reset_form_posted_by_a_browser_that_kept_no_cookie_says_cookies_are_needed(app, client, seeded, mail):
    """"a form of this site posted without any cookie (cookies blocked, or the Secure cookie
    dropped ...) is refused with a page that says the browser sent no cookie, not that the form
    expired". The reset form is exempt from the app-wide check (its page sends no Referer) and
    checks its token itself: it told such a browser "The form expired. Please open the link
    again.", which fails the same way every time."""
    link = reset_link(app, client, mail)
    page = client.get(link)
    assert page.status_code == 200, page.status_code
    token = parse_qs(urlsplit(link).query)["token"][0]
    client.delete_cookie("idsrv.session", domain="localhost")  # what the browser did not keep
    refused = client.post(link, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "token": token,
                                      "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400, refused.status_code
    assert "sent no cookie" in html, "the reset form posted without a cookie is told the form expired"
    assert "expired" not in html, "the reset form posted without a cookie is told the form expired"
