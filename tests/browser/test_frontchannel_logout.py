"""Front-channel logout in a real browser: the signed-out page's iframe reaches the client's
logout page (with iss and sid) under the page's Content-Security-Policy, without a violation."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import update

from actions import pkce_pair
from identity.extensions import db
from identity.models import Client

pytestmark = [pytest.mark.browser, pytest.mark.database_independent]


@pytest.fixture
def app_logout_page():
    """The client's front-channel logout page: records each request it gets."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b"<!doctype html><title>signed out of the app</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/frontchannel-logout", hits
    server.shutdown()
    server.server_close()


def test_the_signed_out_page_loads_the_clients_logout_page(ui, app, seeded, app_logout_page):
    uri, hits = app_logout_page
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "mobile-pkce").values(
            frontchannel_logout_uri=uri, frontchannel_logout_session_required=True))
        db.session.commit()
        db.session.remove()
    user = seeded["users"][0]
    ui.sign_in(user["username"], user["password"])
    _, challenge = pkce_pair()
    query = urlencode({"client_id": "mobile-pkce", "response_type": "code", "scope": "openid",
                       "redirect_uri": "http://127.0.0.1/callback", "code_challenge": challenge,
                       "code_challenge_method": "S256", "state": "s"})
    answer = ui.page.request.get(ui.url("/connect/authorize?" + query), max_redirects=0)  # the browser's cookies
    assert answer.status == 302 and "code=" in answer.headers["location"]

    posted = ui.sign_out()
    assert posted.status == 200
    assert "frame-src http://127.0.0.1:" in posted.headers["content-security-policy"]
    deadline = time.monotonic() + 10
    while not hits and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(hits) == 1, hits
    params = parse_qs(urlsplit(hits[0]).query)
    assert params["iss"] == [ui.url("").rstrip("/")] and params["sid"][0]
