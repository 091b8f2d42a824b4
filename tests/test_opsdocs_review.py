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
