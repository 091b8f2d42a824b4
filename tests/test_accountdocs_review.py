"""docs/passwords.md, docs/sessions.md, docs/local-api.md and docs/mfa.md read as a contract: each
test holds the code to one sentence of them that it did not keep (the page and the local API alike)."""

import re

import pytest
from sqlalchemy import select

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent
from mfa_actions import enrol_user, password_step, step_clock  # noqa: F401  (fixture)
from test_localapi_support import CHEAP_ARGON2, api, bearer  # noqa: F401  (fixture)


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


# --- docs/mfa.md, Operators: "users mfa-reset removes a user's authenticator app, recovery codes and
# passkeys (a lost phone); they sign in with the password alone until they set up a new one."


def test_a_second_step_whose_factors_were_removed_meanwhile_sends_back_to_the_password(app, seeded, client, step_clock):
    """The person typed the password, is on the code page without a code (the phone is lost), and
    the operator runs `users mfa-reset`: the page must not tell them their factor is a passkey
    (they have none), with no way on but "Start again"; it sends them to the password, saying why."""
    enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    page = client.get("/account/login/mfa")

    assert page.status_code == 302, "the second step of a user with no second factor left is still shown"
    assert page.headers["Location"].startswith("/account/login")
    login_page = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "no second factor" in login_page and "second factor is a passkey" not in login_page
    signed_in = AuthActions(client).login()
    assert signed_in.status_code == 302 and "/account/login" not in signed_in.headers["Location"]
    assert client.get("/account/sessions").status_code == 200


def test_a_code_posted_after_the_factors_were_removed_is_sent_back_to_the_password(app, seeded, client, step_clock):
    """The same, with the code page open from before the reset and a (recovery) code posted."""
    _, codes = enrol_user(app)
    password_step(client)
    page = client.get("/account/login/mfa").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    posted = client.post("/account/login/mfa", data={"csrf_token": csrf_token(page), "code": codes[0]})

    assert posted.status_code == 302, "a code posted after the factors were removed is answered with the passkey step"
    assert "no second factor" in client.get(posted.headers["Location"]).get_data(as_text=True)
    with app.app_context():  # no code was checked, so none was counted toward the lockout
        assert not db.session.scalars(select(AuditEvent).where(AuditEvent.event == "mfa_failed")).all()


def test_a_passkey_posted_after_the_factors_were_removed_is_sent_back_to_the_password(app, seeded, client, step_clock):
    """The same from the second step's "Use a passkey" (a user with an app and a passkey, both
    removed by the reset): the passkey's answer was refused, counted toward the lockout as a wrong
    one, and the page shown again saying the factor is a passkey."""
    from identity.models import User

    enrol_user(app)
    password_step(client)
    page = client.get("/account/login/mfa").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["users", "mfa-reset", "alice"]).exit_code == 0

    posted = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf_token(page), "credential": "{}"})

    assert posted.status_code == 302, "a passkey posted after the factors were removed is refused and counted"
    assert "no second factor" in client.get(posted.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 0


# --- docs/passwords.md: "up to PASSWORD_MAX_LENGTH (128; ... at most 1,024: what the pages, the local API
# and the seed take) ... a longer one is refused by the server with a message"; "The change-password
# page's strength meter asks the server ..., so it shows exactly what the form will say."


def field_errors(html: str, field: str) -> list[str]:
    block = html.split(f'id="{field}-error">', 1)[1].split("</ul>", 1)[0]
    return [re.sub(r"<[^>]+>", "", item).replace("Error: ", "").replace("!", "", 1).strip()
            for item in re.findall(r"<li>(.*?)</li>", block, re.S)]


@pytest.mark.database_independent
def test_a_password_past_the_input_cap_is_refused_with_the_policys_message_everywhere(app, seeded, client, api):
    """Past 1,024 characters (a paste gone wrong), the page said "Field cannot be longer than 1024
    characters." (a limit no password may reach: 128 is), the meter "Use at most 128 characters."
    and more, and the local API "Longer than maximum length 1024.": one policy, three answers."""
    too_long = "tulip-quartz-" * 80  # 1,040 characters
    AuthActions(client).login()
    token = csrf_token(client.get("/account/password").get_data(as_text=True))

    meter = client.post("/account/password/check", data={"new_password": too_long}, headers={"X-CSRFToken": token})
    page = client.post("/account/password", data={"csrf_token": token, "current_password": ALICE_PASSWORD,
                                                  "new_password": too_long, "confirm_password": too_long})
    local = client.post("/localapi/password", headers=bearer(api.token()), json={
        "current_password": ALICE_PASSWORD, "new_password": too_long, "confirm_password": too_long})

    assert meter.get_json()["problems"] == ["Use at most 128 characters."]
    assert page.status_code == 400
    assert field_errors(page.get_data(as_text=True), "new_password") == meter.get_json()["problems"], \
        "the page's message for a password past 1,024 characters is not the meter's"
    assert local.status_code == 400 and local.get_json()["errors"]["new_password"] == meter.get_json()["problems"]
    assert 'maxlength' not in page.get_data(as_text=True).split('id="new_password"')[0].rsplit("<input", 1)[-1]


# --- docs/sessions.md: "a browser session keeps the user agent ... and the truncated address at sign-in;
# a refresh token keeps those of the app's request that created it, so an app grant shows its latest
# refresh"; and docs/local-api.md: the OpenAPI document describes the routes (generate clients from it).


@pytest.mark.database_independent
def test_the_openapi_document_says_whose_address_a_browser_entry_shows(app, flow_clients, client):
    """A browser session's `ip_address` is its sign-in's network, not where it was last seen: the
    OpenAPI document, which client generators copy into their docs, said "last seen from"."""
    from test_sessions_devices import browser, password_grant, sessions_of

    signed_in = browser(app, remote_addr="203.0.113.7")
    signed_in.environ_base["REMOTE_ADDR"] = "198.51.100.9"  # the same browser, on another network
    assert signed_in.get("/account/sessions").status_code == 200
    token = password_grant(client)["access_token"]
    [entry] = [e for e in sessions_of(client, token) if e["kind"] == "browser"]
    assert entry["ip_address"] == "203.0.113.0/24"

    document = client.get("/localapi/openapi.json", headers=bearer(token)).get_json()
    description = document["components"]["schemas"]["Session"]["properties"]["ip_address"]["description"]
    assert "sign-in" in description and "last seen" not in description, \
        f"the OpenAPI document says a browser entry's address is where it was last seen: {description!r}"


# --- docs/passwords.md: "any printable Unicode and spaces (NFKC-normalised ...)": equivalent spellings
# of a password are one password, so a confirmation spelled another way confirms it.


@pytest.mark.database_independent
def test_a_confirmation_in_another_unicode_spelling_confirms_the_new_password(app, seeded, client, api):
    """"é" typed (one code point) in one field and pasted decomposed ("e" and a combining accent, as
    text copied from some macOS and PDF sources is) in the other: the server stores and checks
    NFKC-normalised passwords, so both are the same password, yet the change was refused as a
    mismatch, on the page and in the local API alike."""
    import unicodedata

    composed = "crème brûlée lantern orchard"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed

    local = client.post("/localapi/password", headers=bearer(api.token()), json={
        "current_password": ALICE_PASSWORD, "new_password": composed, "confirm_password": decomposed})

    assert local.status_code == 204, f"a confirmation in another Unicode spelling was refused: {local.get_json()}"
    assert AuthActions(client).login(password=decomposed).status_code == 302  # the same password, either spelling
    page_token = csrf_token(client.get("/account/password").get_data(as_text=True))
    again = client.post("/account/password", data={"csrf_token": page_token, "current_password": composed,
                                                   "new_password": "ｌａｎｔｅｒｎ ｏｒｃｈｉｄ velvet 204",
                                                   "confirm_password": "lantern orchid velvet 204"})
    assert again.status_code == 200 and "Your password was changed" in again.get_data(as_text=True)
