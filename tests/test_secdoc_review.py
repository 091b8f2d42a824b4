"""docs/security.md read as a contract: each test holds the code to one of its sentences, on a
path where the promise had not been kept."""

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from actions import AuthActions, OAuthActions, argon2_costs
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


# --- no user enumeration: the same Argon2 work after the cost was raised ----------------------------

def test_a_wrong_password_costs_the_same_as_an_unknown_user_after_the_argon2_cost_was_raised(
        flow_clients, database_uri, monkeypatch):
    """"Unknown user, wrong password and locked account get the same message after the same Argon2
    work (a dummy hash is verified for unknown users)." The cost is a setting (FLASK_ARGON2_*) and
    a password's hash keeps the cost it was made with until its user's next successful sign-in.
    After the cost was raised, a wrong password for such a user (every user who has not signed in
    since) was checked at the old cost, while an unknown user's dummy verification ran at the new
    one: the clock told which user names exist, on the sign-in page and at the password grant."""
    from app import create_app
    from conftest import PRODUCTION_ARGON2, HttpsClient, close_connections, make_config

    raised = create_app(make_config(database_uri, **PRODUCTION_ARGON2))  # users seeded at the suite's cheap cost
    raised.test_client_class = HttpsClient
    current = PRODUCTION_ARGON2["ARGON2_MEMORY_COST_KIB"] * PRODUCTION_ARGON2["ARGON2_TIME_COST"]
    try:
        http = raised.test_client()
        page = http.get("/account/login")
        token = csrf_token(page.get_data(as_text=True))

        def form(username):
            def attempt():
                answer = http.post("/account/login", data={"csrf_token": token, "username": username,
                                                           "password": "not-the-password-123"})
                assert answer.status_code == 400, answer.status_code
            return attempt

        def grant(username):
            def attempt():
                answer = OAuthActions(http).token("legacy", grant_type="password", username=username,
                                                  password="not-the-password-123", scope="openid")
                assert answer.get_json()["error"] == "invalid_grant", answer.get_json()
            return attempt

        for how in (form, grant):
            unknown = argon2_costs(how("nobody-here"), monkeypatch)
            known = argon2_costs(how("bob"), monkeypatch)
            assert max(unknown) >= current, unknown
            assert max(known) >= current, \
                f"a wrong password ran verifications costing {known}, an unknown user's {unknown} ({how.__name__})"
    finally:
        close_connections(raised)
