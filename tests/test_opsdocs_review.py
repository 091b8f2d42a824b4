"""The operator's docs (cli.md, signing-keys.md, recovery.md, email.md, metrics.md) read as a
contract, sentence by sentence, and held to the code."""

import json

import pytest


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
