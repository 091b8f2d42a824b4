"""The review of mailed links against mail scanners, previews and prefetchers: they fetch a link
(GET, HEAD, from other addresses, without cookies) seconds before the person opens it. A scanner's
request must change nothing, and the person's own click must still work and say what is true.
Against a real 2-worker gunicorn server (tests/servers.py) on SQLite, or on the suite's
PostgreSQL when FLASK_SQLALCHEMY_DATABASE_URI names it."""

import time

import pytest
import requests

from forms_review_support import ALICE_PASSWORD, Browser, Rows, demo_server

pytestmark = pytest.mark.server

NEW_ADDRESS = "alice.scanned@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("scanners"), "scanners") as running:
        yield running


@pytest.fixture
def rows(server):
    found = Rows(server.database_uri)
    yield found
    found.close()


def _wait_for_link(mail, rows, address: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not mail.to(address) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mail.to(address), f"no mail to {address}"
    return mail.link(mail.to(address)[-1])


def _path(link: str, base: str) -> str:
    return link[link.index("/account/"):]


def _scanner() -> requests.Session:
    """A mail scanner: no cookies, its own user agent."""
    session = requests.Session()
    session.headers["User-Agent"] = "Mozilla/5.0 (compatible; SafeLinksScanner/1.0)"
    return session


def test_head_of_a_verification_link_changes_nothing(server, rows, mail):
    """RFC 9110 section 9.3.2: HEAD is safe. A scanner's HEAD must not use the link or apply the
    address; the person's click after it applies the change."""
    browser = Browser(server.url)
    browser.sign_in()
    post = browser.form_post("/account/email", {"change-email": NEW_ADDRESS,
                                                "change-current_password": ALICE_PASSWORD},
                             prefix="change-")
    assert post().status_code == 200
    link = _wait_for_link(mail, rows, NEW_ADDRESS)
    path = _path(link, server.url)

    head = _scanner().head(server.url + path, timeout=30, allow_redirects=False)
    assert head.status_code == 200, head.status_code
    assert rows.scalar("SELECT email FROM users WHERE username = 'alice'") == "alice@example.com", \
        "a HEAD of the verification link applied the address change"
    assert rows.scalar("SELECT count(*) FROM account_tokens WHERE purpose = 'verify_email' AND used_at IS NOT NULL") == 0, \
        "a HEAD of the verification link used it up"

    clicked = browser.get(server.url + path, timeout=30)
    assert clicked.status_code == 200 and NEW_ADDRESS in clicked.text, clicked.text[:500]
    assert rows.scalar("SELECT email FROM users WHERE username = 'alice'") == NEW_ADDRESS
