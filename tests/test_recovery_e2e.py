"""Forgot password from the mobile app, end to end against a real server (gunicorn, two workers):
the app sends alice to the system browser for its hybrid + PKCE authorization request (RFC
8252); she follows "Forgot your password?", the mail (sent by the worker's sender thread to the
test SMTP server) brings the link, she sets a new password, signs in, and the pending request
completes: code -> token -> GET /localapi/account."""

import json
import re
import secrets
from html import unescape
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from conftest import ALICE_PASSWORD, DEMO_SEED
from servers import csrf_from, pkce_pair, redirect_params, seeded_server, token_request, sign_in

pytestmark = pytest.mark.server

MOBILE = {"client_id": "mobile", "secret": "s3cret", "redirect_uri": "com.example.app:/callback"}
SCOPE = "openid profile email IdentityServerApi offline_access"
NEW_PASSWORD = "harbor-velvet-juniper-4471"


@pytest.fixture
def server(tmp_path):
    with seeded_server(tmp_path, json.loads(DEMO_SEED.read_text()), name="recovery") as running:
        yield running


def link_in(html: str, text: str) -> str:
    match = re.search(r'<a href="([^"]+)">' + re.escape(text) + "</a>", html)
    assert match, f"no link {text!r} in:\n{html[:3000]}"
    return unescape(match.group(1))


def test_forgot_password_from_the_mobile_app(server, mail):
    base = server.url
    browser = requests.Session()  # the system browser
    verifier, challenge = pkce_pair()
    nonce = secrets.token_urlsafe(12)
    query = urlencode({"client_id": MOBILE["client_id"], "response_type": "code id_token", "scope": SCOPE,
                       "redirect_uri": MOBILE["redirect_uri"], "state": "s-123", "nonce": nonce,
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    pending = browser.get(base + "/connect/authorize?" + query, allow_redirects=False, timeout=30)
    assert pending.status_code == 302 and pending.headers["Location"].startswith("/account/login?returnUrl="), pending.text

    # the login page -> "Forgot your password?" -> the request for a link
    login_page = browser.get(base + pending.headers["Location"], timeout=30)
    forgot_url = base + link_in(login_page.text, "Forgot your password?")
    forgot_page = browser.get(forgot_url, timeout=30)
    assert forgot_page.status_code == 200
    asked = browser.post(forgot_url, data={"csrf_token": csrf_from(forgot_page.text), "username": "alice"}, timeout=30)
    assert asked.status_code == 200 and "Check your mail" in asked.text

    # the mail, from the worker's sender thread, with an absolute link under the issuer
    message = mail.wait_for(to="alice@example.com", timeout=30)
    link = mail.link(message)
    assert link.startswith(base + "/account/reset-password?token=")

    # the reset page (no Referer leaves it) -> the new password -> back to sign-in for the pending request
    reset_page = browser.get(link, timeout=30)
    assert reset_page.status_code == 200 and reset_page.headers["Referrer-Policy"] == "no-referrer"
    token = re.search(r'name="token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="token"', reset_page.text)
    assert token, reset_page.text[:2000]
    done = browser.post(link, allow_redirects=False, timeout=30, headers={"Referer": ""}, data={
        "csrf_token": csrf_from(reset_page.text), "token": token.group(1) or token.group(2),
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302, done.text
    assert done.headers["Location"] == pending.headers["Location"]  # the login page of the pending request

    # the old password is gone; the new one signs in and the pending request completes
    assert sign_in(requests.Session(), base, "alice", ALICE_PASSWORD).status_code == 400
    login_url = base + done.headers["Location"]
    login_page = browser.get(login_url, timeout=30)
    assert "Your password was changed" in login_page.text
    signed_in = browser.post(login_url, allow_redirects=False, timeout=30, data={
        "csrf_token": csrf_from(login_page.text), "username": "alice", "password": NEW_PASSWORD})
    response = signed_in
    while response.status_code in (302, 303) and not response.headers["Location"].startswith(MOBILE["redirect_uri"]):
        response = browser.get(requests.compat.urljoin(base, response.headers["Location"]), allow_redirects=False, timeout=30)
    assert response.status_code == 303 and response.headers["Location"].startswith(MOBILE["redirect_uri"]), response.text
    params = redirect_params(response)
    assert params["state"] == "s-123" and {"code", "id_token"} <= params.keys(), params

    tokens = token_request(base, MOBILE["client_id"], MOBILE["secret"], grant_type="authorization_code",
                           code=params["code"], redirect_uri=MOBILE["redirect_uri"], code_verifier=verifier)
    assert tokens.status_code == 200, tokens.text
    account = requests.get(base + "/localapi/account", timeout=30,
                           headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert account.status_code == 200 and account.json()["username"] == "alice"

    # and alice was told, without a link
    notice = mail.wait_for(to="alice@example.com", count=2, timeout=30)
    assert notice["Subject"].endswith("password was changed") and mail.links(notice) == []
    assert urlsplit(link).query not in server.log(tail=400)  # the token is in no server log line
