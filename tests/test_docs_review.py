"""Review from outside: the docs' examples, copied and pasted, against what the product does."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ALICE_PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def promql_block(page: str) -> str:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return re.search(r"```promql\n(.*?)```", text, re.S).group(1)


def numbered_query(block: str, number: int) -> str:
    """Query `number` of a promql block: the lines after its `# N.` comment, up to the next comment."""
    lines, taking = [], False
    for line in block.splitlines():
        if re.match(r"# \d+\.", line):
            taking = line.startswith(f"# {number}.")
        if line.startswith("#"):
            continue
        if taking and line.strip():
            lines.append(line)
    return "\n".join(lines)


def scraped_series(text: str, *names: str) -> dict[str, float]:
    """Each series of the named metrics in a /metrics answer, as `name{labels}` -> value."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        if series.partition("{")[0] in names:
            found[series] = float(value)
    return found


def test_metrics_query_3_sees_a_refresh_token_reuse_of_a_client_with_no_code_replay(
        client, flow_clients, tmp_path):
    """metrics.md: "query 3 above 0" is the alert for stolen tokens; a reuse alone must make it so."""
    if shutil.which("promtool") is None:  # .ci/run installs Debian's prometheus, which has it
        reason = "needs Prometheus's promtool to evaluate PromQL: apt-get install -y prometheus"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PromQL test, but {reason}")
        pytest.skip(reason)
    from actions import OAuthActions

    oauth = OAuthActions(client)
    first = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                        scope="openid offline_access").get_json()["refresh_token"]
    assert oauth.token("legacy", grant_type="refresh_token", refresh_token=first).status_code == 200
    assert oauth.token("legacy", grant_type="refresh_token", refresh_token=first).status_code == 400
    names = ("identity_refresh_token_reuse_total", "identity_authorization_code_replays_total")
    series = scraped_series(client.get("/metrics").get_data(as_text=True), *names)
    reuse = series['identity_refresh_token_reuse_total{client_id="legacy"}']
    assert reuse >= 1
    expected: dict[str, float] = {}
    for name, value in series.items():
        client_id = re.search(r'client_id="([^"]*)"', name).group(1)
        expected[client_id] = expected.get(client_id, 0) + value
    # Each series as Prometheus scrapes it: 0 an hour ago (made at 0 by the client's first token), its value since.
    inputs = "".join(f"      - series: '{name}'\n        values: '0 {value:g}x60'\n" for name, value in series.items())
    query = numbered_query(promql_block("metrics.md"), 3)
    samples = "".join(f"          - labels: '{{client_id=\"{c}\"}}'\n            value: {v:g}\n"
                      for c, v in sorted(expected.items()))
    rules = tmp_path / "query3.yml"
    rules.write_text("tests:\n  - interval: 1m\n    input_series:\n" + inputs
                     + "    promql_expr_test:\n      - expr: |\n"
                     + "".join(f"          {line}\n" for line in query.splitlines())
                     + "        eval_time: 60m\n        exp_samples:\n" + samples, encoding="utf-8")
    run = subprocess.run(["promtool", "test", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    got = re.search(r"got: (.*)", run.stdout + run.stderr)
    assert run.returncode == 0, f"query 3 of metrics.md for {expected}: got {got.group(1) if got else run.stdout}"


def test_a_clients_stolen_token_series_exist_at_zero_before_its_first_reuse(client, flow_clients):
    """metrics.md: query 3 is increase() of the reuse counter; increase() sees no count that made a series."""
    from actions import OAuthActions

    oauth = OAuthActions(client)
    issued = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                         scope="openid offline_access")
    assert issued.status_code == 200
    series = scraped_series(client.get("/metrics").get_data(as_text=True),
                            "identity_refresh_token_reuse_total", "identity_authorization_code_replays_total")
    assert 'identity_refresh_token_reuse_total{client_id="legacy"}' in series, \
        f"no reuse series for a client that holds a refresh token: {sorted(series)}"
    assert 'identity_authorization_code_replays_total{client_id="legacy"}' in series
