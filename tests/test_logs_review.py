"""Review from outside: everything the server writes about itself (its log and standard error),
read by an operator and by an attacker who gets hold of it (docs/deployment.md "Logs",
docs/security.md "Logs")."""

import logging

import pytest

from conftest import ALICE_PASSWORD, csrf_token


# --- Flask-Limiter's records ------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_RESET_ACCOUNT": "1 per hour"}])
def test_a_refused_forgot_password_post_logs_no_name_typed_into_it(app, client, seeded, caplog):
    """Flask-Limiter records every refusal ("ratelimit 1 per 1 hour (reset-account:<what was typed>)
    exceeded") at INFO, with the limit's key: the forgot-password form's user name as typed (a
    password typed there by mistake too), the address given to registration. At DEBUG or INFO
    (caplog, an operator's logging config) those reached the log, which holds no such data."""
    caplog.set_level(logging.DEBUG)
    typed = ALICE_PASSWORD  # the password, typed into the user-name field
    statuses = []
    for _ in range(2):
        page = client.get("/account/forgot-password")
        statuses.append(client.post("/account/forgot-password", data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "username": typed}).status_code)
    assert statuses == [200, 429]
    refusals = [r.getMessage() for r in caplog.records if r.name == "flask-limiter"]
    assert refusals and all("recovery.forgot_password" in message for message in refusals), refusals
    assert typed not in caplog.text, f"what was typed into the form is in the log: {refusals}"
