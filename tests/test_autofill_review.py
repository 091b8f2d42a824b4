"""What a password manager and the browser's autofill need from every form the server renders:
the well-known URL that leads to the change-password page, and password fields that take the
whole of every password the policy allows (a browser cuts a pasted or filled value at the
field's maxlength, silently)."""

import json
import re

import pytest

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.services.seed import apply_seed, load_seed

# --- /.well-known/change-password (W3C "A Well-Known URL for Changing Passwords") ----------------


def test_well_known_change_password_leads_to_the_change_password_page(client, seeded):
    """A manager that found a weak or leaked password opens /.well-known/change-password: it must
    redirect (302, 303 or 307) to the page, and a signed-out visit ends there after sign-in."""
    response = client.get("/.well-known/change-password")
    assert response.status_code in (302, 303, 307), (
        f"/.well-known/change-password answered {response.status_code}, not a redirect to the change-password page")
    assert response.headers["Location"] == "/account/password"

    # signed out: the page sends the browser to sign in, and the sign-in back to the page
    to_login = client.get(response.headers["Location"])
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/account/login?")
    login_url = to_login.headers["Location"]
    page = client.get(login_url)
    signed_in = client.post(login_url, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                             "username": "alice", "password": ALICE_PASSWORD})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/account/password"
    form = client.get("/account/password")
    assert form.status_code == 200 and 'autocomplete="new-password"' in form.get_data(as_text=True)

    # signed in: straight to the form
    assert client.get("/.well-known/change-password").headers["Location"] == "/account/password"
    # and the spec's probe of a server that answers everything 200 (Chrome trusts the URL only then)
    probe = client.get("/.well-known/resource-that-should-not-exist-whose-status-code-should-not-be-200")
    assert not 200 <= probe.status_code < 300, probe.status_code
