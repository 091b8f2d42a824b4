"""POST /account/password/check: what the change-password page's strength meter asks, answered
by the same policy (for the same user) the form applies on submit. CSRF-protected, rate-limited,
for a signed-in user only, never cached."""

import pytest

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.services.password_policy import password_problems

CHECK = "/account/password/check"


@pytest.fixture
def signed_in(client, seeded):
    assert AuthActions(client).login().status_code == 302
    return csrf_token(client.get("/account/password").get_data(as_text=True))


def check(client, token, new_password, **extra):
    return client.post(CHECK, data={"new_password": new_password, **extra}, headers={"X-CSRFToken": token})


CANDIDATES = ["passwordpassword", "erinerinerinerin", " " * 20, "short", "alice@example.com",
              "tulip-quartz-harbor-917", "lantern-orchid-meadow-5531", "seven lemons climb a staircase",
              "x" * 200, "Alice Example Alice"]


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_the_answer_is_the_policy_for_this_user(app, client, signed_in, candidate):
    response = check(client, signed_in, candidate)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "no-store" in response.headers["Cache-Control"]
    body = response.get_json()
    with app.app_context():
        expected = password_problems(candidate, username="alice", email="alice@example.com", name="Alice Example")
    assert body["problems"] == expected
    assert body["acceptable"] is (not expected)
    assert body["strength"] in ((3, 4) if not expected else (0, 1))
    assert body["label"] in ("Good", "Strong") if not expected else body["label"] in ("Too short", "Not accepted")


def test_the_current_password_counts_when_given(client, signed_in):
    body = check(client, signed_in, ALICE_PASSWORD, current_password=ALICE_PASSWORD).get_json()

    assert body["acceptable"] is False
    assert body["problems"] == ["The new password must differ from the current one."]


def test_without_the_csrf_token_it_is_refused(client, signed_in):
    response = client.post(CHECK, data={"new_password": "seven lemons climb a staircase"})

    assert response.status_code == 400
    assert "problems" not in response.get_data(as_text=True)


def test_signed_out_it_answers_nothing(client, seeded):
    token = csrf_token(client.get("/account/login").get_data(as_text=True))

    response = client.post(CHECK, data={"new_password": "seven lemons climb a staircase"}, headers={"X-CSRFToken": token})

    assert response.status_code in (302, 401)
    assert "problems" not in response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_CHECK": "3 per minute"}])
def test_it_is_rate_limited(client, signed_in):
    statuses = [check(client, signed_in, f"seven lemons climb stairs {i}").status_code for i in range(4)]

    assert statuses == [200, 200, 200, 429]
