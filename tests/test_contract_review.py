"""The contract auditor's review: each test pins a statement of the public contract (or of the
docs that repeat it) that the running server did not keep."""

from conftest import ALICE_PASSWORD
from test_localapi_support import LocalApi, bearer

import pytest


@pytest.fixture
def api(app, client, seeded):
    return LocalApi(app, client)


# --- the local API's 202 answers: no body, so no Content-Type ---------------------------------


def test_the_verification_mail_s_202_carries_no_content_type(api, mail):
    response = api.client.post("/localapi/email/verification", headers=bearer(api.token()))
    assert response.status_code == 202
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers  # not text/html, as an empty Flask answer is labelled
    mail.wait_for(to="alice@example.com")


def test_the_address_change_s_202_carries_no_content_type(api, mail):
    response = api.client.put("/localapi/email", headers=bearer(api.token()),
                              json={"email": "alice@example.org", "current_password": ALICE_PASSWORD})
    assert response.status_code == 202
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    mail.wait_for(to="alice@example.org")
