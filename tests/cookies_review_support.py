"""Helpers for tests/test_cookies_review.py: the real-browser fixtures of tests/browser/conftest.py,
for the tests of that file that need Chromium's own cookie rules (SameSite)."""

from browser.conftest import PageActions, browser, console, context, page  # noqa: F401 (fixtures)

CLIENT_SITE = "http://localhost:8089"  # another site than the live server's 127.0.0.1
SPA_CALLBACK = "http://127.0.0.1:8080/callback"  # the demo spa client's redirect URI
from browser.test_passkeys import Authenticator, register_passkey  # noqa: E402,F401
