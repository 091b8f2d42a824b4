"""Regression tests from a review of the local API: what its answers say right after a change,
where problem+json reaches, and how a token sent two ways is answered."""

import time

import pytest

from mfa_actions import code_at, enrol_user, step_clock  # noqa: F401  (fixture)
from test_localapi_support import ALICE_PASSWORD, CHEAP_ARGON2, api, bearer, problem_of  # noqa: F401  (fixtures)


@pytest.fixture
def app_config():
    return {**CHEAP_ARGON2, "BEARER_CACHE_SECONDS": 0.5}  # the default, as deployed


def test_the_account_reports_an_address_change_as_soon_as_it_is_answered(api, mail):
    """A worker may remember a token's user for BEARER_CACHE_SECONDS; the address change must not
    leave GET /localapi/account saying `pending_email: null` after its 202 (the app shows it)."""
    token = api.token()
    for _ in range(2):  # the second use is remembered by the worker
        assert api.get_account(token).get_json()["pending_email"] is None
    response = api.client.put("/localapi/email", headers=bearer(token),
                              json={"email": "alice@example.org", "current_password": ALICE_PASSWORD})
    assert response.status_code == 202
    assert api.get_account(token).get_json()["pending_email"] == "alice@example.org"


# --- a second factor guards the address as it guards the password ------------------------------------


MFA_REQUIRED = "/problems/mfa-required"
THIEF = "thief@example.net"


def test_an_address_change_needs_the_second_factor_as_the_password_change_does(app, api, mail, step_clock):
    """A token and the password, without the second factor, cannot change the password
    (POST /localapi/password answers 403 mfa-required); they must not get there through the
    address either: change it to one's own mailbox, follow its link, ask for a reset link."""
    from test_email_change import alice

    enrol_user(app)
    token = api.token()  # issued without `mfa` in its amr (a password-only sign-in, or a stolen token)
    refused = api.change_password(token)
    assert refused.status_code == 403 and problem_of(refused)["type"].endswith(MFA_REQUIRED)

    response = api.client.put("/localapi/email", headers=bearer(token),
                              json={"email": THIEF, "current_password": ALICE_PASSWORD})
    assert response.status_code == 403, response.get_data(as_text=True)
    assert problem_of(response)["type"].endswith(MFA_REQUIRED)
    assert alice(app).pending_email is None
    assert problem_of(api.client.put("/localapi/email", headers=bearer(token), json={
        "email": THIEF, "current_password": ALICE_PASSWORD, "otp": "AAAAA-AAAAA"}))["type"].endswith(MFA_REQUIRED)
    assert alice(app).pending_email is None


def test_with_its_code_the_address_change_goes_through(app, api, mail, step_clock):
    from test_email_change import alice

    secret, codes = enrol_user(app)
    token = api.token()
    refused = api.client.put("/localapi/email", headers=bearer(token), json={  # the password is checked first
        "email": "alice@example.org", "current_password": "not-" + ALICE_PASSWORD, "otp": codes[0]})
    assert refused.status_code == 400 and "current_password" in problem_of(refused)["errors"]
    response = api.client.put("/localapi/email", headers=bearer(token), json={
        "email": "alice@example.org", "current_password": ALICE_PASSWORD, "otp": codes[0]})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert alice(app).pending_email == "alice@example.org"
    again = api.client.put("/localapi/email", headers=bearer(token), json={  # the recovery code is spent
        "email": "alice@example.net", "current_password": ALICE_PASSWORD, "otp": codes[0]})
    assert again.status_code == 403


def test_the_openapi_document_describes_otp_on_the_address_change(api):
    document = api.client.get("/localapi/openapi.json", headers=bearer(api.token())).get_json()
    change = document["components"]["schemas"]["EmailChange"]
    assert "otp" in change["properties"] and "otp" not in change["required"]
    assert MFA_REQUIRED in document["paths"]["/localapi/email"]["put"]["responses"]["403"]["description"]


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "MFA_RECENT_SECONDS": 1}])
def test_the_address_page_asks_for_a_code_when_the_sign_in_with_it_is_not_recent(app, client, seeded, mail,
                                                                                  step_clock):
    from conftest import csrf_token
    from mfa_actions import sign_in_with_code
    from test_email_change import alice

    secret, _ = enrol_user(app)
    sign_in_with_code(client, secret)
    time.sleep(2.1)  # the sign-in is no longer recent (MFA_RECENT_SECONDS=1)
    page = client.get("/account/email")
    assert 'name="change-otp"' in page.get_data(as_text=True)
    form = {"change-csrf_token": csrf_token(page.get_data(as_text=True)), "change-email": THIEF,
            "change-current_password": ALICE_PASSWORD}
    refused = client.post("/account/email", data=form)
    assert refused.status_code == 403 and "authenticator app" in refused.get_data(as_text=True)
    assert alice(app).pending_email is None
    accepted = client.post("/account/email", data={**form, "change-otp": code_at(secret)})
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    assert alice(app).pending_email == THIEF


# --- rate limits: mobile users share carrier NAT addresses ---------------------------------------------


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://"}])
def test_many_users_behind_one_address_can_each_ask_for_a_verification_link(app, api, mail):
    """The contract's defaults allow at least 1,000 requests a minute per client IP on the endpoints
    other than sign-in and password change, since mobile users share carrier NAT addresses: one
    user's requests must not use up everyone else's behind the same address."""
    from identity.services.accounts import create_user

    with app.app_context():
        for n in range(12):
            create_user(f"user{n}", f"orchid-lantern-velvet-{n:03d}", email=f"user{n}@example.org")
    for n in range(12):
        response = api.client.post("/localapi/email/verification", headers=bearer(api.token(username=f"user{n}")))
        assert response.status_code == 202, (n, response.get_data(as_text=True))
        change = api.client.put("/localapi/email", headers=bearer(api.token(username=f"user{n}")),
                                json={"email": f"new{n}@example.org", "current_password": "wrong-password-here"})
        assert change.status_code == 400, (n, change.get_data(as_text=True))


@pytest.mark.parametrize("app_config", [{**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
                                         "RATELIMIT_DEFAULT": "3 per minute"}])
def test_the_verification_mail_keeps_a_limit_per_client_address(app, api, mail):
    from identity.services.accounts import create_user

    with app.app_context():
        for n in range(4):
            create_user(f"user{n}", f"orchid-lantern-velvet-{n:03d}", email=f"user{n}@example.org")
    statuses = [api.client.post("/localapi/email/verification", headers=bearer(api.token(username=f"user{n}"))).status_code
                for n in range(4)]
    assert statuses == [202, 202, 202, 429]


# --- problem+json everywhere under /localapi -----------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_the_blueprints_own_root_answers_problem_json(api, method):
    response = getattr(api.client, method)("/localapi", headers=bearer(api.token()))
    assert response.status_code == 404
    assert problem_of(response)["status"] == 404


def test_a_path_that_only_begins_like_the_local_api_keeps_the_sites_page(api):
    response = api.client.get("/localapifoo")
    assert response.status_code == 404 and response.mimetype == "text/html"
