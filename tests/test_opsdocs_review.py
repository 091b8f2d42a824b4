"""The operator's docs (cli.md, signing-keys.md, recovery.md, email.md, metrics.md) read as a
contract, sentence by sentence, and held to the code."""

import json

import pytest

from identity.extensions import db


@pytest.mark.database_independent
def test_keys_json_output_is_what_the_docs_and_help_say(app, runner):
    # cli.md: --json prints "one JSON value for scripts (an object, or a list for `list`)", and
    # every --help said "Print the result as one JSON object.", the lists' and `keys rotate`'s too,
    # which print lists (tests/test_cli_operators.py holds `keys rotate` to a list).
    assert runner.invoke(args=["keys", "list"]).exit_code == 0  # the current keys, made on first use
    for command in (["keys", "rotate"], ["keys", "list"], ["users", "list"], ["clients", "list"], ["scopes", "list"]):
        helped = runner.invoke(args=[*command, "--help"]).output
        value = json.loads(runner.invoke(args=[*command, "--json"]).output)
        assert isinstance(value, list)
        assert "JSON list" in helped and "JSON object" not in helped, f"{' '.join(command)} --help: {helped}"
    assert "a list for `list` and for `keys rotate`" in " ".join(open("docs/cli.md").read().split())


def test_keys_list_calls_current_the_retired_key_that_signs_again(app, seeded, runner):
    # signing-keys.md: "Set back, the algorithm signs with its retired key for as long"; `keys
    # list` names a key "current" when it signs and "published (retired)" when it only verifies.
    from test_keys import issue, kid_of, same_database_app

    es256_kid = kid_of(issue(app))
    moved = same_database_app(app, ACCESS_TOKEN_SIGNING_ALG="RS256")  # an instance updated to RS256
    try:
        with moved.app_context():
            from identity.services import keys
            keys._reload()  # retires the ES256 key (key_retired)
    finally:
        with moved.app_context():
            db.engine.dispose()
    from identity.services import keys
    with app.app_context():
        keys._reload()
    signing = kid_of(issue(app))  # ES256 configured here again: its retired key signs
    assert signing == es256_kid
    listed = {row["kid"]: row["state"] for row in json.loads(runner.invoke(args=["keys", "list", "--json"]).output)}
    assert listed[signing] == "current", f"the ES256 key that signs is listed {listed[signing]!r}"


def _failures(app, event):
    from sqlalchemy import select
    from identity.models import AuditEvent
    with app.app_context():
        found = [(e.user_id, e.detail["reason"]) for e in
                 db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id))]
        db.session.remove()
    return found


def _user_id(app, username="alice"):
    from sqlalchemy import select
    from identity.models import User
    with app.app_context():
        found = db.session.scalar(select(User.id).where(User.username == username))
        db.session.remove()
    return found


def test_a_reset_link_opened_while_the_account_is_disabled_is_audited_as_disabled(app, client, seeded, mail, runner):
    # recovery.md: `users disable` ends the pending links, "and no link opens while the account is
    # disabled"; each refusal is audited, `password_reset_failed` with reason `disabled`.
    from test_recovery import local, reset_link

    link = reset_link(app, client, mail)
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert client.get(local(link)).status_code == 400
    assert client.head(local(link)).status_code == 400  # a HEAD is not audited
    assert _failures(app, "password_reset_failed") == [(_user_id(app), "disabled")]


def test_a_verification_link_opened_while_the_account_is_disabled_is_audited_as_disabled(app, client, seeded, mail,
                                                                                          runner):
    # email.md: `users disable` ends a pending address change and its links, "and no link opens
    # while the account is disabled (reason `disabled`)".
    from test_email_change import local, send_verification
    from test_localapi_support import LocalApi

    assert send_verification(LocalApi(app, client)).status_code == 202
    link = mail.link(mail.wait_for(to="alice@example.com"))
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert client.get(local(link)).status_code == 400
    assert _failures(app, "email_verification_failed") == [(_user_id(app), "disabled")]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_RESET": "100 per hour",
                                         "RATELIMIT_PASSWORD_RESET_ACCOUNT": "2 per hour",
                                         "RATELIMIT_STORAGE_URI": "memory://"}])
def test_the_per_account_reset_limit_counts_the_account_by_name_and_by_address(app, client, seeded, mail):
    # recovery.md: RATELIMIT_PASSWORD_RESET_ACCOUNT limits "forgot-password requests naming one
    # account, from any IP"; the page takes "the user name or email", and both name alice.
    from actions import forgot_password_from

    assert [forgot_password_from(client, "10.0.0.1", "alice"), forgot_password_from(client, "10.0.0.2", "alice")] == [200, 200]
    assert forgot_password_from(client, "10.0.0.3", "alice@example.com") == 429, "alice's address got past the limit her user name had spent"
    assert forgot_password_from(client, "10.0.0.4", "nobody@example.com") == 200  # another account (or none) is not held up


@pytest.mark.database_independent
def test_keys_rotate_on_a_database_with_no_key_does_not_claim_a_current_key(app, runner):
    # signing-keys.md: `keys rotate` starts a staged rotation, its successor published first while
    # "the current key signs until then". With no key yet, the keys it makes are the first ones and
    # sign at once (keys.py, _plan): there is no current key to sign until then.
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "the current key signs until then" not in result.output, result.output
    assert result.output.count("signs from now") == 2, result.output
