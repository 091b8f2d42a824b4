"""What the browser itself enforces: CSRF tokens on every form, no framing of the pages, and the
site working over HTTPS the way it is deployed (Secure cookies, HSTS, Flask-WTF's referrer check)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.serving import make_server

from .conftest import PageActions

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

REMOVE_CSRF_INPUT = "() => document.querySelectorAll('main input[name=csrf_token]').forEach(input => input.remove())"


def alice(seeded):
    user = seeded["users"][0]
    return user["username"], user["password"], user["name"]


class AttackerSite:
    """Another site on loopback (http://localhost:<port>, while the app is http://127.0.0.1:<port>):
    a real server, since Chromium keeps pages it cannot place on the network from framing or
    posting to loopback (Local Network Access), which would hide what our server does."""

    def __init__(self):
        self.html = "<!doctype html><title>empty</title>"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def attacker():
    site = AttackerSite()
    yield site
    site.close()


# --- CSRF --------------------------------------------------------------------------------


def test_sign_in_without_the_csrf_token_is_refused(ui, seeded):
    username, password, _ = alice(seeded)
    ui.goto("/account/login")
    ui.page.evaluate(REMOVE_CSRF_INPUT)
    posted = ui.sign_in(username, password, path=None)
    assert posted.status == 400
    text = ui.page.inner_text("main")
    assert "error 400" in text.lower() and "not sent from this site" in text
    ui.assert_looks_finished()
    ui.goto("/")
    assert ui.signed_in_as() is None


def test_password_change_without_the_csrf_token_is_refused(ui, seeded):
    username, password, name = alice(seeded)
    ui.sign_in(username, password)
    ui.goto("/account/password")
    ui.page.evaluate(REMOVE_CSRF_INPUT)
    new_password = "violet-anchor-meadow-482"
    ui.page.get_by_label("Current password").fill(password)
    ui.page.get_by_label("New password", exact=True).fill(new_password)
    ui.page.get_by_label("Confirm new password").fill(new_password)
    assert ui.submit_and_catch_post().status == 400
    ui.goto("/account/password")
    assert ui.signed_in_as() == name, "the refused post did not end the session"

    ui.page.context.clear_cookies()
    assert ui.sign_in(username, password).status == 302, "the password is unchanged"


def test_sign_out_without_the_csrf_token_is_refused(ui, seeded):
    username, password, name = alice(seeded)
    ui.sign_in(username, password)
    ui.goto("/account/logout")
    ui.page.evaluate(REMOVE_CSRF_INPUT)
    assert ui.submit_and_catch_post().status == 400
    ui.goto("/")
    assert ui.signed_in_as() == name, "still signed in"


def test_a_login_form_on_another_site_cannot_sign_the_browser_in(ui, seeded, live_server, attacker):
    """Login CSRF: another site posts its own credentials to our login form."""
    username, password, _ = alice(seeded)
    attacker.html = (f"""<!doctype html><title>Win a prize</title>
        <form method="post" action="{live_server.url}/account/login">
          <input name="username" value="{username}"><input name="password" value="{password}">
          <button type="submit">Claim</button>
        </form>""")
    ui.page.goto(attacker.url)
    with ui.page.expect_response(lambda r: r.request.method == "POST") as posted:
        ui.page.get_by_role("button", name="Claim").click()
    assert posted.value.status == 400
    ui.goto("/")
    assert ui.signed_in_as() is None


# --- framing -------------------------------------------------------------------------------


def test_login_page_cannot_be_framed(ui, console, live_server, attacker):
    console.expect_csp_violations()  # the refusal to frame is reported as one
    response = ui.goto("/account/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    login_url = live_server.url + "/account/login"
    attacker.html = f"""<!doctype html><title>Looks legit</title>
        <iframe id="victim" src="{login_url}" width="600" height="600"></iframe>"""
    with ui.page.expect_response(login_url) as framed:
        ui.page.goto(attacker.url)
    assert framed.value.status == 200, "the server answered; the browser must refuse to show it"
    ui.page.wait_for_load_state("load")

    frames = [f for f in ui.page.frames if f != ui.page.main_frame]
    assert len(frames) == 1
    frame = frames[0]
    assert not frame.url.startswith(live_server.url), f"the login page rendered inside the frame: {frame.url}"
    assert frame.locator("input[name=password]").count() == 0
    refusals = [m for m in console.messages if "frame-ancestors" in m or "X-Frame-Options" in m]
    assert refusals, f"no refusal to frame in the console: {console.messages}"


# --- HTTPS, as deployed ------------------------------------------------------------------------


@pytest.fixture
def https_server(app):
    """The app over TLS (a throwaway self-signed certificate) with production cookie flags."""
    assert app.config["SESSION_COOKIE_SECURE"], "the app fixture keeps Secure cookies"
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context="adhoc")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_sign_in_change_password_and_sign_out_over_https(page, console, https_server, seeded):
    """The HTTPS path: Secure cookies, HSTS, and Flask-WTF's check that a form post's Referer is this site."""
    ui = PageActions(page, https_server, console)
    username, password, name = alice(seeded)
    response = ui.goto("/account/login")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    ui.assert_looks_finished()

    posted = ui.sign_in(username, password, path=None)
    assert posted.status == 302, f"{posted.status}: {ui.page.inner_text('main')}"
    assert ui.signed_in_as() == name
    cookie = next(c for c in page.context.cookies() if c["name"] == "idsrv.session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    ui.goto("/account/password")
    new_password = "violet-anchor-meadow-482"
    ui.page.get_by_label("Current password").fill(password)
    ui.page.get_by_label("New password", exact=True).fill(new_password)
    ui.page.get_by_label("Confirm new password").fill(new_password)
    assert ui.submit_and_catch_post().status == 200, ui.page.inner_text("main")

    assert ui.sign_out().status == 200
    assert ui.signed_in_as() is None
