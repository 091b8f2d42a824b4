"""The review of the account pages' forms, each sent twice: at once (a double click, two threads
released together with the same cookies and CSRF token) and again after the first answered (a
browser resending a post whose answer was lost), against a real 2-worker gunicorn server on
SQLite, or on the suite's PostgreSQL when FLASK_SQLALCHEMY_DATABASE_URI names it.

A browser shows the last answer it gets: each one must tell the truth about what happened, and
the database, the mail and the audit trail must show the change once."""

import re
import time

import pytest

from forms_review_support import ALICE_PASSWORD, Browser, Rows, demo_server, reseed, twice_at_once, twice_in_a_row

pytestmark = pytest.mark.server

NEW_PASSWORD = "granite-meadow-lantern-552"
SENDS = {"at once": twice_at_once, "in a row": twice_in_a_row}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("forms"), "forms") as running:
        yield running


@pytest.fixture
def rows(server):
    """The server's database, the demo seed put back (alice's password, no sessions, no audit)."""
    found = Rows(server.database_uri)
    yield found
    found.close()


@pytest.fixture(autouse=True)
def fresh_seed(server, tmp_path):
    reseed(server, tmp_path)


def _mails_settled(mail, rows, expected_sent: int, timeout: float = 10) -> None:
    """Wait until the server's sender threads have sent (and audited) `expected_sent` mails, and a moment more."""
    deadline = time.monotonic() + timeout
    while rows.audited("mail_sent") < expected_sent and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)


@pytest.mark.parametrize("send", SENDS)
def test_password_change_sent_twice_says_changed_and_counts_no_failure(server, rows, mail, send):
    browser = Browser(server.url)
    browser.sign_in()
    post = browser.form_post("/account/password", {"current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD,
                                                   "confirm_password": NEW_PASSWORD})
    answers = SENDS[send](post)
    assert [a.status_code for a in answers] == [200, 200]
    assert all("Your password was changed" in a.text for a in answers)
    assert rows.audited("password_changed") == 1
    assert rows.audited("password_change_failed") == 0
    assert rows.scalar("SELECT failed_attempts FROM users WHERE username = 'alice'") == 0
    _mails_settled(mail, rows, 1)
    assert len(mail.to("alice@example.com")) == 1
    assert browser.get(server.url + "/account/password", allow_redirects=False).status_code == 200  # still signed in


def _reset_link(server, mail, rows) -> str:
    """A reset link for alice, asked for on the forgot-password page: its path and query."""
    asked = Browser(server.url).form_post("/account/forgot-password", {"username": "alice"})()
    assert asked.status_code == 200
    link = mail.link(mail.wait_for(to="alice@example.com"))
    _mails_settled(mail, rows, 1)
    mail.clear()
    return link[link.index("/account/reset-password"):]


@pytest.mark.parametrize("send", SENDS)
def test_reset_form_sent_twice_says_changed_both_times(server, rows, mail, send):
    path = _reset_link(server, mail, rows)
    browser = Browser(server.url)
    token = path.split("token=", 1)[1].split("&", 1)[0]
    post = browser.form_post(path, {"token": token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    answers = SENDS[send](post)
    assert [(a.status_code, a.headers.get("Location")) for a in answers] == [(302, "/account/login")] * 2
    assert rows.audited("password_reset") == 1
    assert rows.audited("password_reset_failed") == 0
    _mails_settled(mail, rows, 2)
    assert len(mail.to("alice@example.com")) == 1  # "your password was changed", once
    said = browser.get(server.url + "/account/login").text
    assert "Your password was changed" in said and "cannot be used" not in said


@pytest.mark.parametrize("send", SENDS)
def test_address_change_sent_twice_mails_and_audits_once(server, rows, mail, send):
    browser = Browser(server.url)
    browser.sign_in()
    post = browser.form_post("/account/email", {"change-email": "alice.new@example.com",
                                                "change-current_password": ALICE_PASSWORD}, prefix="change-")
    answers = SENDS[send](post)
    assert [a.status_code for a in answers] == [200, 200]
    assert all("We sent a link to alice.new@example.com" in a.text for a in answers)
    _mails_settled(mail, rows, 2)
    assert rows.audited("email_change_requested") == 1
    assert [len(mail.to("alice.new@example.com")), len(mail.to("alice@example.com"))] == [1, 1]
    assert rows.scalar("SELECT failed_attempts FROM users WHERE username = 'alice'") == 0
    # the one link mailed works
    link = mail.link(mail.to("alice.new@example.com")[0])
    followed = browser.get(server.url + link[link.index("/account/verify-email"):], timeout=30)
    assert followed.status_code == 200 and "alice.new@example.com" in followed.text


@pytest.mark.parametrize("send", SENDS)
def test_forgot_password_sent_twice_mails_one_link_that_works(server, rows, mail, send):
    post = Browser(server.url).form_post("/account/forgot-password", {"username": "alice"}, hidden=("once",))
    answers = SENDS[send](post)
    assert [a.status_code for a in answers] == [200, 200]
    assert all("Check your mail" in a.text for a in answers)
    _mails_settled(mail, rows, 1)
    assert len(mail.to("alice@example.com")) == 1
    link = mail.link(mail.to("alice@example.com")[0])
    opened = Browser(server.url).get(server.url + link[link.index("/account/reset-password"):], timeout=30)
    assert opened.status_code == 200 and "cannot be used" not in opened.text


@pytest.mark.parametrize("send", SENDS)
def test_registration_sent_twice_makes_one_user_and_mails_only_its_link(tmp_path, mail, send):
    from servers import seeded_server

    with seeded_server(tmp_path, {"users": [], "clients": [], "api_scopes": []}, name="register",
                       env={"FLASK_REGISTRATION_ENABLED": "true"}) as registering:
        rows = Rows(registering.database_uri)
        try:
            post = Browser(registering.url).form_post("/account/register", {
                "username": "carol", "email": "carol@example.com", "name": "Carol",
                "password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
            answers = SENDS[send](post)
            assert [a.status_code for a in answers] == [200, 200]
            assert all("carol@example.com" in a.text for a in answers)
            _mails_settled(mail, rows, 1)
            assert rows.scalar("SELECT count(*) FROM users") == 1
            assert rows.audited("user_registered") == 1
            assert rows.audited("registration_refused") == 0, rows.all("SELECT event, detail, at, user_id FROM audit_events")
            assert ["verify-email" in mail.text(m) for m in mail.to("carol@example.com")] == [True]
        finally:
            rows.close()


def _field(html: str, name: str) -> str:
    found = re.search(r'<input[^>]*name="%s"[^>]*value="([^"]*)"' % re.escape(name), html)
    assert found, f"no {name} field in the page"
    return found.group(1)


@pytest.mark.parametrize("send", SENDS)
def test_send_the_link_again_clicked_twice_mails_one_link_that_works(server, rows, mail, send):
    browser = Browser(server.url)
    browser.sign_in()
    post = browser.form_post("/account/email", {}, prefix="send-", hidden=("send-once",))
    answers = SENDS[send](post)
    assert [a.status_code for a in answers] == [200, 200]
    assert all("We sent a link to alice@example.com" in a.text for a in answers)
    _mails_settled(mail, rows, 1)
    assert len(mail.to("alice@example.com")) == 1
    assert rows.audited("email_verification_sent") == 1
    # the page shown after offers the form with a value of its own: a click on it mails a link
    shown = answers[-1].text
    again = browser.post(server.url + "/account/email", timeout=30, headers={"Referer": server.url + "/account/email"},
                         data={"send-csrf_token": _field(shown, "send-csrf_token"), "send-once": _field(shown, "send-once")})
    assert again.status_code == 200
    _mails_settled(mail, rows, 2)
    assert len(mail.to("alice@example.com")) == 2
    link = mail.link(mail.to("alice@example.com")[-1])
    followed = browser.get(server.url + link[link.index("/account/verify-email"):], timeout=30)
    assert followed.status_code == 200 and "Your address is confirmed" in followed.text
