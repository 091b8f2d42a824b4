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
from mfa_actions import enrol_user, step_clock  # noqa: F401  (step_clock: a fixture)

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


# --- password fields take every password the policy allows ----------------------------------------

# A passphrase of emoji (each one code point, two UTF-16 code units), 600 long: within a
# PASSWORD_MAX_LENGTH of 1,024 (the largest the setting takes), with enough different symbols for
# the policy. A browser counts maxlength in UTF-16 code units (HTML: "length" of the value), so a
# maxlength of 1,024 holds only 512 of them: Chromium cuts a filled or pasted value there, silently.
EMOJI = [chr(0x1F400 + i) for i in range(0, 60, 3)]
LONG_PASSWORD = "".join(EMOJI[(i * 7) % len(EMOJI)] for i in range(600))
LONG_POLICY = {"PASSWORD_MAX_LENGTH": 1024, "REGISTRATION_ENABLED": True}
PASSWORD_INPUT = re.compile(r'<input\b[^>]*type="password"[^>]*>')


def utf16_length(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def as_browser_fills(tag: str, value: str) -> str:
    """The value a browser leaves in the input `tag` after a fill or paste of `value`: cut at its
    maxlength, counted in UTF-16 code units."""
    found = re.search(r'maxlength="(\d+)"', tag)
    if not found:
        return value
    units = value.encode("utf-16-le")[: 2 * int(found.group(1))]
    return units.decode("utf-16-le", errors="ignore")


def password_inputs(html: str) -> dict[str, str]:
    return {re.search(r'id="([^"]+)"', tag).group(1): tag for tag in PASSWORD_INPUT.findall(html)}


@pytest.mark.parametrize("app_config", [LONG_POLICY])
def test_the_sign_in_page_takes_a_long_unicode_password_whole(client, app, seeded):
    """A password set through the local API or the CLI (no maxlength there), up to the policy's
    maximum, must reach the server whole from the sign-in page's field."""
    with app.app_context():
        apply_seed(load_seed(json.dumps({"users": [
            {"username": "carol", "email": "carol@example.com", "name": "Carol", "password": LONG_PASSWORD}]})))
    page = client.get("/account/login").get_data(as_text=True)
    field = password_inputs(page)["password"]
    filled = as_browser_fills(field, LONG_PASSWORD)
    assert filled == LONG_PASSWORD, (
        f"the sign-in page's password field ({field}) cuts a {len(LONG_PASSWORD)}-character password the policy "
        f"allows to {len(filled)} characters")
    response = client.post("/account/login", data={"csrf_token": csrf_token(page), "username": "carol",
                                                   "password": filled})
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [LONG_POLICY])
def test_no_password_field_is_shorter_than_the_policy_allows(client, app, seeded, step_clock):
    """Every form that takes or sets a password: its fields hold PASSWORD_MAX_LENGTH characters of
    any kind (2 UTF-16 code units each at most)."""
    pages = {"register": client.get("/account/register").get_data(as_text=True)}
    AuthActions(client).login()
    pages["password"] = client.get("/account/password").get_data(as_text=True)
    pages["email"] = client.get("/account/email").get_data(as_text=True)
    enrol_user(app)
    pages["mfa"] = client.get("/account/mfa").get_data(as_text=True)
    short = {}
    for name, html in pages.items():
        fields = password_inputs(html)
        assert fields, name
        for field_id, tag in fields.items():
            if as_browser_fills(tag, LONG_PASSWORD) != LONG_PASSWORD:
                short[f"{name}#{field_id}"] = re.search(r'maxlength="(\d+)"', tag).group(1)
    assert short == {}, f"password fields that cut a password the policy allows (maxlength): {short}"


# --- the change-password form names the account as the manager saved it ---------------------------

ACCOUNT_NAME = re.compile(r'<input\b[^>]*id="account-username"[^>]*>')


def account_name_on(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.headers.get("Location")
    tag = ACCOUNT_NAME.search(page.get_data(as_text=True)).group(0)
    return re.search(r'value="([^"]*)"', tag).group(1)


def test_a_sign_in_by_email_names_the_account_by_email_on_the_password_setting_forms(client, app, seeded, step_clock):
    """The sign-in form takes "User name or email", and a manager saves the login under what was
    typed. Its change-password form must carry that name: Chrome matches the form's username to
    the saved logins by value, so "alice" beside a login saved as "alice@example.com" saves a
    second login with the new password and leaves the one it fills with the old password."""
    AuthActions(client).login(username="alice@example.com")
    assert account_name_on(client, "/account/password") == "alice@example.com", (
        "the change-password form names the account 'alice', not the 'alice@example.com' it was signed in with")
    assert account_name_on(client, "/account/email") == "alice@example.com"

    AuthActions(client).logout()
    AuthActions(client).login(username="ALICE")
    assert account_name_on(client, "/account/password") == "alice"

    # with a second step between: the name survives it
    from mfa_actions import sign_in_with_code

    secret, _ = enrol_user(app)
    AuthActions(client).logout()
    assert sign_in_with_code(client, secret, username="alice@example.com").status_code == 302
    assert account_name_on(client, "/account/password") == "alice@example.com"
