"""The pages as assistive technology and password managers read them (the accessibility review):
the account a new password belongs to, errors tied to their field and announced, the focus after
an error, input types, and titles that tell the pages apart."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import csrf_token
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401
from test_recovery import ALICE_MAIL, NEW_PASSWORD, local, reset_link


def _inputs(html: str, marker: str) -> list[str]:
    return [tag for tag in re.findall(r"<input\b[^>]*>", html) if marker in tag]


def _reset_form(html: str) -> str:
    return re.search(r'<form class="form" method="post">(.*?)</form>', html, re.DOTALL).group(1)


# --- the reset page names its account, as the change-password page does -----------------------


def _assert_names_alice(html: str) -> None:
    fields = _inputs(html, 'autocomplete="username"')
    assert len(fields) == 1, f"no user name for password managers on the reset page: {fields}"
    field = fields[0]
    assert 'value="alice"' in field and "readonly" in field
    assert "name=" not in field, "never posted: the link names the account"
    form = _reset_form(html)
    assert field in form and form.index(field) < form.index('autocomplete="new-password"')


def test_the_reset_page_names_the_account_for_password_managers(app, client, seeded, mail):
    link = reset_link(app, client, mail)

    page = client.get(local(link))

    assert page.status_code == 200
    _assert_names_alice(page.get_data(as_text=True))


def test_the_reset_page_shown_again_after_a_refused_password_still_names_it(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    html = client.get(local(link)).get_data(as_text=True)
    token = parse_qs(urlsplit(link).query)["token"][0]

    refused = client.post(local(link), data={"csrf_token": csrf_token(html), "token": token,
                                             "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD + "x"})

    assert refused.status_code == 400
    _assert_names_alice(refused.get_data(as_text=True))


# --- the second step's error belongs to its one field ---------------------------------------------


def _input(html: str, name: str) -> str:
    fields = _inputs(html, f'name="{name}"')
    assert len(fields) == 1, fields
    return fields[0]


def _described_by(html: str, field: str) -> str:
    ids = re.search(r'aria-describedby="([^"]*)"', field)
    assert ids, f"the field is described by nothing: {field}"
    texts = [re.search(rf'<[^>]+id="{i}"[^>]*>(.*?)</(?:ul|p|div)>', html, re.DOTALL) for i in ids.group(1).split()]
    return " ".join(re.sub(r"<[^>]+>|\s+", " ", t.group(1)) for t in texts if t)


def test_a_wrong_code_on_the_second_step_is_tied_to_the_code_field(app, client, seeded, step_clock):
    secret, _ = enrol_user(app)
    assert password_step(client).status_code == 302
    wrong = "000000" if code_at(secret) != "000000" else "111111"

    response = second_step(client, wrong)

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    field = _input(html, "code")
    assert 'aria-invalid="true"' in field, f"the code field is not marked invalid: {field}"
    assert "not right" in _described_by(html, field)
    assert 'role="alert"' in html  # and still announced


# --- pages that differ have titles that differ -----------------------------------------------


def _title(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.DOTALL).group(1).strip()


def test_the_factors_page_and_the_second_step_have_different_titles(app, client, seeded, step_clock):
    from actions import AuthActions

    assert AuthActions(client).login().status_code == 302
    factors = _title(client.get("/account/mfa").get_data(as_text=True))
    client.post("/account/logout", data={"csrf_token": csrf_token(client.get("/account/logout").get_data(as_text=True))})
    enrol_user(app)
    assert password_step(client).status_code == 302
    step = _title(client.get("/account/login/mfa").get_data(as_text=True))

    assert factors != step, f"the settings page and the sign-in step are both titled {step!r}"


def test_the_two_broken_link_pages_have_different_titles(client, seeded):
    verify = _title(client.get("/account/verify-email?token=nope").get_data(as_text=True))
    reset = _title(client.get("/account/reset-password?token=nope").get_data(as_text=True))

    assert verify != reset, f"a broken confirmation link and a broken reset link are both titled {reset!r}"


# --- a phone shows the keyboard the field needs -------------------------------------------------


@pytest.mark.parametrize("app_config", [{"REGISTRATION_ENABLED": True}])
def test_address_fields_ask_for_an_email_keyboard_and_the_setup_code_for_digits(app, client, seeded):
    from actions import AuthActions
    from mfa_actions import post_mfa

    register = client.get("/account/register").get_data(as_text=True)
    assert 'inputmode="email"' in _input(register, "email"), _input(register, "email")

    assert AuthActions(client).login().status_code == 302
    change = client.get("/account/email").get_data(as_text=True)
    assert 'inputmode="email"' in _input(change, "change-email"), _input(change, "change-email")

    setup = post_mfa(client, "start").get_data(as_text=True)
    code = _input(setup, "code")
    assert 'inputmode="numeric"' in code and 'autocomplete="one-time-code"' in code, code


# --- a second step that ran out of time says so -----------------------------------------------------


def test_a_code_sent_after_the_second_step_expired_is_told_why_it_is_back_at_sign_in(app, client, seeded, step_clock):
    import time

    secret, _ = enrol_user(app)
    assert password_step(client).status_code == 302
    page = client.get("/account/login/mfa").get_data(as_text=True)
    app.config["MFA_PENDING_SECONDS"] = 1
    time.sleep(2.1)

    response = client.post("/account/login/mfa", data={"csrf_token": csrf_token(page), "code": code_at(secret)},
                           follow_redirects=True)

    html = response.get_data(as_text=True)
    assert response.request.path == "/account/login"
    assert 'role="status"' in html and "sign in again" in html.lower(), \
        "the sign-in page comes back with no word on why the code was not taken"


# --- the address page tells password managers whose password it asks for -------------------------


def test_the_email_page_names_the_account_before_its_password_field(client, seeded):
    from actions import AuthActions

    assert AuthActions(client).login().status_code == 302

    html = client.get("/account/email").get_data(as_text=True)

    form = re.search(r'<form class="form" method="post">((?:(?!</form>).)*name="change-email".*?)</form>', html, re.DOTALL).group(1)
    fields = _inputs(form, 'autocomplete="username"')
    assert len(fields) == 1, "the new address is the only text field before the password: a password manager takes it for the user name"
    assert 'value="alice"' in fields[0] and "name=" not in fields[0] and "readonly" in fields[0]
    assert form.index(fields[0]) < form.index('autocomplete="current-password"')


# --- an expired form's page leads back to the form, not to a reload that posts it again ------------


def test_an_expired_sign_in_form_leads_back_to_the_form_with_its_request(client, seeded):
    url = "/account/login?returnUrl=%2Fconnect%2Fauthorize%3Fclient_id%3Dspa"
    client.get(url)

    refused = client.post(url, data={"csrf_token": "expired", "username": "alice", "password": "x"})

    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "form expired" in html
    assert "Reload the page" not in html, "a reload posts the expired form again: the same page"
    assert f'href="{url}"' in html, "no way back to the form and its pending request but the home page"


# --- a refused sign-in is tied to the password field, where the focus lands -------------------------


def test_a_refused_sign_in_is_tied_to_the_password_field(client, seeded):
    html = client.get("/account/login").get_data(as_text=True)

    refused = client.post("/account/login", data={"csrf_token": csrf_token(html), "username": "alice",
                                                   "password": "not-her-password"})

    page = refused.get_data(as_text=True)
    assert refused.status_code == 400
    field = _input(page, "password")
    assert "autofocus" in field  # where a screen reader arrives, with the user name kept
    assert 'aria-invalid="true"' in field, f"the password field is not marked invalid: {field}"
    assert "incorrect" in _described_by(page, field)
    assert 'value="alice"' in _input(page, "username")


# --- adding a passkey is said on the page the script reloads, as removing one is ---------------------


def test_the_factors_page_says_a_passkey_was_added(client, seeded):
    from actions import AuthActions
    from test_passkeys_web import register_over_http
    from webauthn_keys import SoftKey

    AuthActions(client).login()
    assert register_over_http(client, SoftKey(), name="Laptop").status_code == 201

    page = client.get("/account/mfa").get_data(as_text=True)  # passkeys.js reloads it

    status = re.search(r'<div class="alert alert--success" role="status">(.*?)</div>\s*</div>', page, re.DOTALL)
    assert status and "Laptop" in status.group(1), "the page reloads with the new passkey in its list and no word that it was added"


# --- the setup code's field, where the focus lands, says where the key is -----------------------------


def test_the_setup_code_field_is_described_by_where_the_key_is(client, seeded):
    from actions import AuthActions
    from mfa_actions import post_mfa

    assert AuthActions(client).login().status_code == 302

    html = post_mfa(client, "start").get_data(as_text=True)

    field = _input(html, "code")
    assert "autofocus" in field  # the focus skips the QR code, the key and the instructions above it
    assert "key" in _described_by(html, field), f"the field says nothing of the key it needs: {field}"
