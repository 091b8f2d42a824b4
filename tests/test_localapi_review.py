"""Regression tests from a review of the local API: what its answers say right after a change,
where problem+json reaches, and how a token sent two ways is answered."""

import pytest

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
