"""The review of mailed links against mail scanners, previews and prefetchers: they fetch a link
(GET, HEAD, from other addresses, without cookies) seconds before the person opens it. A scanner's
request must change nothing, and the person's own click must still work and say what is true.
Against a real 2-worker gunicorn server (tests/servers.py) on SQLite, or on the suite's
PostgreSQL when FLASK_SQLALCHEMY_DATABASE_URI names it."""

import time

import pytest
import requests

from forms_review_support import ALICE_PASSWORD, Browser, demo_server, reseed
from test_forms_review import rows  # noqa: F401 (a fixture: the server's database)

pytestmark = pytest.mark.server

NEW_ADDRESS = "alice.scanned@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with demo_server(tmp_path_factory.mktemp("scanners"), "scanners") as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_seed(server, tmp_path, mail):
    """The demo seed put back before each test (as tests/test_forms_review.py does), no mail kept."""
    reseed(server, tmp_path)
    mail.clear()


def _wait_for_link(mail, rows, address: str, kind: str = "/account/", timeout: float = 10) -> str:
    """The link of the newest mail to `address` that has one under `kind`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [link for m in mail.to(address) for link in mail.links(m) if kind in link]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} link mailed to {address}")


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


def _ask_for_reset(server) -> None:
    post = Browser(server.url).form_post("/account/forgot-password", {"username": "alice"}, hidden=("once",))
    assert post().status_code == 200


def test_scanner_get_and_head_of_a_reset_link_leave_it_for_the_person(server, rows, mail):
    """A scanner's GET and HEAD (no cookies, another client) open the reset page only; the person,
    in another browser than the one that asked (a phone's mail app), then sets the password."""
    _ask_for_reset(server)
    path = _path(_wait_for_link(mail, rows, "alice@example.com", "/account/reset-password"), server.url)
    time.sleep(0.5)  # the mail_sent audit row
    audited = rows.scalar("SELECT count(*) FROM audit_events")
    counts = _table_counts(rows)
    for method in ("HEAD", "GET", "GET"):
        answer = _scanner().request(method, server.url + path, timeout=30, allow_redirects=True)
        assert answer.status_code == 200, (method, answer.status_code)
        assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert rows.scalar("SELECT count(*) FROM audit_events") == audited, "a scanner's fetch was audited"
    assert _table_counts(rows) == counts
    assert rows.scalar("SELECT count(*) FROM account_tokens WHERE purpose = 'password_reset' "
                       "AND used_at IS NULL") == 1
    phone = Browser(server.url)
    page = phone.page(path)
    import re as _re
    token = _re.search(r'name="token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="token"', page.text)
    from servers import csrf_from
    new_password = "quartz-harbor-willow-418"
    done = phone.post(server.url + path, allow_redirects=False, timeout=30,
                      data={"csrf_token": csrf_from(page.text), "token": token.group(1) or token.group(2),
                            "new_password": new_password, "confirm_password": new_password})
    assert done.status_code in (302, 303), done.text[:500]
    assert "/account/login" in done.headers["Location"]
    assert "token" not in done.headers["Location"]
    time.sleep(1.5)  # the request log's batch (LOG_REQUESTS_FLUSH_SECONDS)
    secret = path.split("token=")[1].split("&")[0]
    logged = server.log_path.read_text(errors="replace")
    assert "/account/reset-password" in logged and secret not in logged, "the reset link's token is in the server's log"


def _table_counts(rows) -> dict[str, int]:
    from sqlalchemy import inspect
    names = [n for n in inspect(rows.engine).get_table_names() if n != "alembic_version"]
    return {name: rows.scalar(f"SELECT count(*) FROM {name}") for name in names}


def test_scanner_fetching_the_links_an_app_shows_stores_nothing(server, rows):
    """The sign-in page with a returnUrl, the authorization request itself, and the pages the
    mails link to: a scanner's GET and HEAD (no cookies) write no row."""
    authorize = ("/connect/authorize?client_id=spa&response_type=code&scope=openid%20email"
                 "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&state=s1&nonce=n1"
                 "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
    from urllib.parse import quote
    paths = [authorize, "/account/login?returnUrl=" + quote(authorize, safe=""),
             "/account/forgot-password?returnUrl=" + quote(authorize, safe=""), "/account/login", "/account/register"]
    before = _table_counts(rows)
    for path in paths:
        for method in ("HEAD", "GET"):
            answer = _scanner().request(method, server.url + path, timeout=30, allow_redirects=True)
            assert answer.status_code in (200, 404), (method, path, answer.status_code)
    assert _table_counts(rows) == before


def test_scanner_head_of_a_used_reset_link_audits_nothing(server, rows, mail):
    """A used link fetched again by a scanner or a mail app's preview with HEAD (safe, RFC 9110):
    the page's status says it does not work, and no audit row blames the account for it."""
    _ask_for_reset(server)
    path = _path(_wait_for_link(mail, rows, "alice@example.com", "/account/reset-password"), server.url)
    rows_engine = rows.engine
    with rows_engine.begin() as connection:  # the person used it
        from sqlalchemy import text
        connection.execute(text("UPDATE account_tokens SET used_at = created_at WHERE purpose = 'password_reset'"))
    time.sleep(0.5)
    before = rows.audited("password_reset_failed")
    head = _scanner().head(server.url + path, timeout=30)
    assert head.status_code == 400 and head.headers["Referrer-Policy"] == "no-referrer"
    assert rows.audited("password_reset_failed") == before, "a HEAD of a used reset link was audited as a failed reset"
    get = _scanner().get(server.url + path, timeout=30)
    assert get.status_code == 400 and "already used" in get.text
    assert rows.audited("password_reset_failed") == before + 1  # opening it is audited (docs/recovery.md)
