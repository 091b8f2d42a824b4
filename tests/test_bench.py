"""The benchmark suite (`python -m bench`) runs end to end and reports what went wrong.

The figures themselves are not asserted (they depend on the machine); what is: every scenario
ran against the real server with wrk and got only the answers it expects, the correctness
checks the benchmark makes under load passed, the JSON report carries the ratios and the
targets, and a run whose requests fail is reported as failed.
"""

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

import requests

from bench import data, node_reference, signin
from bench.server import BARE_SPEC, Gunicorn
from bench.wrk import Wrk, ensure_wrk
from servers import ROOT

pytestmark = [pytest.mark.server, pytest.mark.database_independent]

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")
# the scenarios one short run covers: every one but the growth scenario (minutes of inserts)
WRK_KEYS = ["1", "2", "3", "4a", "4b", "5"]
FLOW_KEYS = ["6a", "6b"]
OVERLOAD_KEYS = ["1x4", "2x4"]  # scenario 8
NODE_KEY = "2n"  # node-oidc-provider, scenario 2's reference


def node_or_skip() -> str:
    """node (20 or later), or a skip naming what is missing (.ci/run checks it is there)."""
    try:
        return node_reference.node_binary()
    except node_reference.NodeUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def wrk_binary():
    if shutil.which("wrk") is None and os.geteuid() != 0:
        pytest.skip("wrk is not installed (.ci/run installs Debian's package)")
    return ensure_wrk(lambda message: None)


def bench_env() -> dict[str, str]:
    """The environment of a `python -m bench` process: this one's, without the suite's FLASK_ settings
    (the benchmark gives its servers their own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}


@pytest.fixture(scope="module")
def short_run(wrk_binary, tmp_path_factory):
    """One short benchmark run of scenarios 1-6 and 8, on the suite's database kind, under granian
    (so the bare endpoint is measured under gunicorn sync too, as the local API's reference)."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "bench", "--server", "granian", "--scenarios", "1,2,3,4,5,6,8", "--duration", "1", "--runs", "1",
               "--warmup", "1", "--startup-samples", "1", "--quiet-wait", "0", "--json", str(out)]
    if DATABASE_URI.startswith("postgresql"):
        command += ["--database", DATABASE_URI]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=bench_env())
    report = json.loads(out.read_text()) if out.exists() else None
    return result, report


def test_short_run_exits_cleanly_and_writes_a_report(short_run):
    result, report = short_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert report is not None
    assert report["failed"] is False
    expected = set(WRK_KEYS + FLOW_KEYS + OVERLOAD_KEYS) | ({NODE_KEY} if report["node_reference"]["measured"] else set())
    assert set(report["scenarios"]) == expected
    expected_db = "PostgreSQL" if DATABASE_URI.startswith("postgresql") else "SQLite"
    assert report["settings"]["database"].startswith(expected_db)


def test_every_scenario_got_only_expected_answers(short_run):
    _, report = short_run
    bare = report["bare"]
    assert bare["errors"] == 0 and bare["median_rps"] > 0
    bare_sync = report["bare_sync"]  # the local API's reference: bare Flask under gunicorn's sync workers
    assert bare_sync["errors"] == 0 and bare_sync["median_rps"] > 0
    for key in WRK_KEYS + OVERLOAD_KEYS:
        scenario = report["scenarios"][key]
        run = scenario["runs"][0]
        assert scenario["errors"] == 0, (key, run["statuses"], run["socket_errors"])
        assert run["requests"] > 0 and scenario["median_rps"] > 0, key
        assert set(run["statuses"]) == {"200"}, (key, run["statuses"])
        assert scenario["ratio_rps_to_bare"] > 0, key
        assert scenario["server_cpu_ms_per_op"] > 0, key
    for key in FLOW_KEYS:
        scenario = report["scenarios"][key]
        assert scenario["errors"] == 0 and scenario["median_rps"] > 0, (key, scenario["runs"])
        reference = scenario["reference"]  # the pure hash rate it is held against, measured next to each run
        assert reference["rate"] > 0, key
        runs = scenario["runs"]
        assert len(reference["pure_runs"]) == len(runs) == len(reference["ratio_runs"]), (key, reference)
        assert [run["reference_rate"] for run in runs] == pytest.approx(reference["pure_runs"], abs=0.01), key
        assert reference["ratio_runs"] == pytest.approx([run["rate"] / run["reference_rate"] for run in runs], abs=0.001)
        assert reference["ratio"] == pytest.approx(sorted(reference["ratio_runs"])[len(runs) // 2], abs=0.001), key


def test_checks_under_load_passed(short_run):
    _, report = short_run
    revocation = report["scenarios"]["1"]["checks"]
    assert revocation["ok"] is True, revocation
    assert (revocation["before"], revocation["after"]) == ([200], [401]), revocation  # every call, every worker
    refresh = report["scenarios"]["3"]["checks"]
    assert refresh["ok"] is True, refresh
    assert refresh["forked_families"] == 0 and refresh["revoked_under_load"] == 0, refresh
    assert refresh["rotations_stored"] > 0, refresh


def test_report_holds_each_target_and_the_settings_measured(short_run):
    _, report = short_run
    targets = report["targets"]
    assert {t["key"] for t in targets} >= {"1", "2", "3", "4", "6", "8", "mem", "start"}
    assert all(isinstance(t["met"], bool) and t["value"] for t in targets)
    assert any("gunicorn sync" in t["target"] for t in targets if t["key"] == "1")
    assert all("connections served" in t["value"] for t in targets if t["key"] == "8")
    # the CPU and the server, in the JSON as in the header
    assert report["machine"]["cpu_model"] and report["settings"]["server"] == "granian"
    assert report["settings"]["server_description"].startswith("granian ")
    # both scenario 6 loads come from wrk, whose client costs least on the server's cores
    assert (report["settings"]["signin_driver"], report["settings"]["password_driver"]) == ("wrk", "wrk")
    app = report["settings"]["app"]
    assert (app["ARGON2_MEMORY_COST_KIB"], app["ARGON2_TIME_COST"]) == (19456, 2)
    assert app["BEARER_CACHE_SECONDS"] == 0.5
    assert report["startup_seconds"]["median"] > 0
    memory = report["worker_memory_kib"]
    assert len(memory) == 2 and all(v["VmRSS"] > 0 for v in memory.values())


def test_node_reference_measured_with_the_apps_algorithm(short_run):
    """Scenario 2's second target is held against node-oidc-provider measured in the same run."""
    node_or_skip()
    _, report = short_run
    node = report["node_reference"]
    assert node["measured"] is True, node
    assert node["alg"] == report["settings"]["app"]["ACCESS_TOKEN_SIGNING_ALG"] == "ES256"
    assert node["oidc_provider"] == node_reference.pinned_version() and node["processes"] == 1
    scenario = report["scenarios"][NODE_KEY]
    run = scenario["runs"][0]
    assert scenario["errors"] == 0 and set(run["statuses"]) == {"200"}, run["statuses"]
    assert scenario["median_rps"] > 0 and scenario["server_cpu_ms_per_op"] > 0
    target = next(t for t in report["targets"] if t["key"] == "2" and "node-oidc-provider" in t["target"])
    assert "measured in this run" in target["target"]
    assert target["met"] == (report["scenarios"]["2"]["median_rps"] >= scenario["median_rps"])


def test_node_reference_issues_tokens_like_the_app(tmp_path):
    """The reference does the app's work: client_secret_basic, the scope, an RFC 9068 JWT in the algorithm asked."""
    node = node_or_skip()
    node_reference.ensure_installed(lambda message: None)
    provider = node_reference.NodeProvider(node, alg="RS256", client_id=data.SERVICE_CLIENT,
                                           client_secret=data.SERVICE_SECRET, scope=data.LOCAL_API_SCOPE,
                                           log_path=tmp_path / "node.log")
    try:
        provider.start()
        form = {"grant_type": "client_credentials", "scope": data.LOCAL_API_SCOPE}
        good = requests.post(provider.url + "/token", data=form, timeout=10,
                             auth=(data.SERVICE_CLIENT, data.SERVICE_SECRET))
        wrong = requests.post(provider.url + "/token", data=form, timeout=10, auth=(data.SERVICE_CLIENT, "wrong"))
    finally:
        provider.stop()
    assert provider.process is None
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["token_type"] == "Bearer" and body["scope"] == data.LOCAL_API_SCOPE
    header, payload, _ = body["access_token"].split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert decode(header)["alg"] == "RS256" and decode(header)["typ"] == "at+jwt"
    claims = decode(payload)
    assert claims["client_id"] == data.SERVICE_CLIENT and claims["scope"] == data.LOCAL_API_SCOPE
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_failed_requests_make_a_failed_run(wrk_binary, tmp_path):
    """wrk's answers are checked: a path the bare app does not have gives 404s, counted as errors."""
    with Gunicorn(BARE_SPEC, workers=1, log_path=tmp_path / "bare.log", name="bare-404") as server:
        server.start()
        wrk = Wrk(wrk_binary, tmp_path, threads=1, connections=2)
        missing = wrk.run(server.url + "/no-such-path", duration=1)
        found = wrk.run(server.url + "/bare", duration=1)
    assert missing.requests > 0 and missing.statuses == {"404": missing.requests}
    assert missing.errors == missing.requests and missing.failed
    assert found.errors == 0 and not found.failed and found.statuses == {"200": found.requests}


def test_signin_latency_percentiles_come_from_the_histogram():
    histogram = {3: 1, 5: 97, 40: 2}  # 1 ms buckets, as signin.lua counts them
    assert signin._percentile_ms(histogram, 50) == 5.5
    assert signin._percentile_ms(histogram, 99) == 40.5
    assert signin._percentile_ms({}, 50) == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no scheduler autogroups on this kernel")
def test_a_run_gives_its_session_back_the_priority_it_had():
    """--nice sets the priority of the session's autogroup, which the shell that started the run
    shares and which outlives the run: left at -20, every later command of that shell outranked the
    servers it started (a test suite's among them). The run puts it back, also when it fails, as
    here at once (nothing listens on port 1). The shell is a session of its own (autogroup nice 0)."""
    bench = (f'"{sys.executable}" -m bench --nice 3 --scenarios 4 --quiet-wait 0 '
             '--database postgresql+psycopg://nobody:none@127.0.0.1:1/none')
    script = f'cat /proc/self/autogroup; {bench} >/dev/null 2>&1; echo "exit $?"; cat /proc/self/autogroup'
    result = subprocess.run(["sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            start_new_session=True, env=bench_env())
    before, exit_line, after = result.stdout.strip().splitlines()
    assert before.endswith(" nice 0"), before
    assert exit_line != "exit 0", "the run cannot have succeeded without a database"
    assert after.endswith(" nice 0"), f"the session was left at {after!r}"


@pytest.mark.skipif(not DATABASE_URI.startswith("postgresql"), reason="PostgreSQL only")
@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no scheduler autogroups on this kernel")
@pytest.mark.skipif(os.geteuid() != 0, reason="a backend's priority is PostgreSQL's user's to change, or root's")
def test_nice_reaches_the_database_backends():
    """PostgreSQL gives each backend a session, so an autogroup, of its own at nice 0: with the
    server alone at --nice -20, the backends it waits on got a sliver of the cores. --nice gives
    them the server's priority before each measured run."""
    import psycopg
    from sqlalchemy.engine import make_url

    from bench import system

    url = make_url(DATABASE_URI)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as connection:
        backend = connection.info.backend_pid
        assert open(f"/proc/{backend}/autogroup").read().strip().endswith(" nice 0")
        assert system.prioritize_backends(url.database, 3) >= 1
        assert backend in system.postgres_backends(url.database)
        assert open(f"/proc/{backend}/autogroup").read().strip().endswith(" nice 3")


def test_an_unreachable_database_is_one_line_not_a_traceback():
    """An operator's typo in --database (here nothing listens on port 1) ends the run with one line
    naming the database, exit code 2, and neither a Python traceback nor the password."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--scenarios", "4", "--quiet-wait", "0",
         "--database", "postgresql+psycopg://nobody:s3cret-pw@127.0.0.1:1/none"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=bench_env())
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("bench: cannot reach")]
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:1/none" in lines[0], lines[0]
