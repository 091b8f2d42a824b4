"""GET /metrics: the allow-list, what is counted, bounded labels, and the sum over a server's workers.

In-process (the test client) for what is counted and who may read it; a real server (granian) with two
workers for multiprocess mode: requests land on both workers, and one scrape adds them up.
"""

import glob
import os
import re

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from identity.services import metrics
from identity.config.startup import ConfigurationError
from app import create_app
from conftest import make_config
from servers import SERVERS, password_grant_seed, run_together, seeded_server, token_request
from mfa_actions import step_clock  # noqa: F401  (a fixture: the TOTP clock of enrol_user)

SECRET = "metrics-secret-0123456789"
PASSWORD = "tulip-quartz-harbor-917"


def sample(name: str, **labels) -> float:
    """This process's value of a metric (0 before the first count)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, name: str, **labels) -> float:
    """A value from a scrape's text; 0 when the series is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


# --- who may read it -------------------------------------------------------------------------


def test_loopback_reads_the_prometheus_text_format(client):
    response = client.get("/metrics")  # the test client's address is 127.0.0.1
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert response.headers["Cache-Control"] == "no-store"
    assert "# TYPE identity_sign_ins_total counter" in response.text
    assert 'identity_sign_ins_total{result="locked"}' in response.text
    assert "Set-Cookie" not in response.headers  # no session is started or touched


def test_another_address_gets_the_app_404(client):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert response.status_code == 404
    assert "identity_sign_ins_total" not in response.text
    assert response.headers["Content-Type"].startswith("text/html")  # the page any unknown path gets


def test_ipv4_mapped_loopback_is_loopback(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


@pytest.mark.parametrize("app_config", [{"METRICS_ALLOWED_IPS": "10.0.0.0/8, 192.0.2.7"}])
def test_cidr_blocks_and_addresses_from_a_string(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 404
    assert client.get("/metrics").status_code == 404  # loopback is no longer in the list


@pytest.mark.parametrize("app_config", [{"TRUST_PROXY_HOPS": 1}])
def test_behind_a_proxy_the_forwarded_client_address_decides(client):
    """The proxy on loopback forwards an outside client: refused, though the socket is loopback."""
    assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 404
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": "2 per minute"}])
def test_scrapes_pass_no_rate_limit(client):
    assert [client.get("/metrics").status_code for _ in range(5)] == [200] * 5
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 429  # the limit is on, for everything else


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_DEFAULT": "2 per minute"}])
def test_health_checks_pass_no_rate_limit(client, seeded):
    """A load balancer's probes of every instance come from the same few addresses and count in
    the limits' shared store: past RATELIMIT_DEFAULT, /healthz and /readyz answered 429 (an HTML
    page), and the balancer took healthy instances out of service."""
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
    assert [client.get("/readyz").status_code for _ in range(5)] == [200] * 5


def test_only_get_and_head(client):
    assert client.post("/metrics").status_code == 405
    head = client.head("/metrics")
    assert head.status_code == 200 and head.data == b""


@pytest.mark.parametrize("value", [["not-an-ip"], "10.0.0.0/33", 42])
def test_a_wrong_allow_list_is_one_line_naming_the_setting(_migrated, database_uri, value):
    with pytest.raises(ConfigurationError, match="METRICS_ALLOWED_IPS"):
        create_app(make_config(database_uri, METRICS_ALLOWED_IPS=value))


# --- what is counted --------------------------------------------------------------------------


def test_sign_ins_by_result_and_lockouts(app, seeded):
    from identity.services import accounts

    before = {r: sample("identity_sign_ins_total", result=r) for r in metrics.SIGN_IN_RESULTS}
    locks = sample("identity_lockouts_total")
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    with app.app_context():
        assert accounts.authenticate("alice", "tulip-quartz-harbor-917").user is not None
        assert accounts.authenticate("nobody", "tulip-quartz-harbor-917").user is None
        assert accounts.authenticate("alice", "wrong-password-0000").user is None
        assert accounts.authenticate("alice", "wrong-password-0000").locked  # the second failure locks
        assert accounts.authenticate("alice", "tulip-quartz-harbor-917").locked
    assert sample("identity_sign_ins_total", result="success") == before["success"] + 1
    assert sample("identity_sign_ins_total", result="failure") == before["failure"] + 3
    assert sample("identity_sign_ins_total", result="locked") == before["locked"] + 1
    assert sample("identity_lockouts_total") == locks + 1


@pytest.mark.parametrize("how", ["address_change", "factor_removal"])
def test_a_lock_by_any_wrong_current_password_is_counted(app, seeded, step_clock, how):
    """identity_lockouts_total counts "a wrong password locks an account" (docs/metrics.md). A
    lock set by wrong passwords on the address change (page and local API) or the authenticator
    app's removal was audited but not counted: an alert on the metric missed a password being
    guessed through those, with a stolen token or session."""
    from identity.errors import AccountLocked, ValidationFailed
    from identity.extensions import db
    from identity.models import User
    from identity.services import mfa, verification
    from mfa_actions import enrol_user  # its step_clock fixture is imported at the top

    locks = sample("identity_lockouts_total")
    app.config["LOCKOUT_MAX_FAILURES"] = 2
    if how == "factor_removal":
        enrol_user(app)
    with app.app_context():
        user_id = db.session.query(User.id).filter_by(username="alice").scalar()
        for expected in (ValidationFailed, AccountLocked):
            with pytest.raises(expected):
                if how == "address_change":
                    verification.request_email_change(user_id, "new@example.org", "wrong-password-0000")
                else:
                    mfa.remove_totp(user_id, "wrong-password-0000", "000000")
    assert sample("identity_lockouts_total") == locks + 1


def test_tokens_by_grant_type_and_registered_client(client, seeded):
    issued = sample("identity_tokens_issued_total", grant_type="client_credentials", client_id="service")
    response = client.post("/connect/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic " + _basic("service", "service-secret-change-me")})
    assert response.status_code == 200, response.text
    assert sample("identity_tokens_issued_total", grant_type="client_credentials", client_id="service") == issued + 1


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_client_id_that_is_not_registered_is_other(app):
    replays = sample("identity_authorization_code_replays_total", client_id="other")
    tokens = sample("identity_tokens_issued_total", grant_type="other", client_id="other")
    with app.app_context():
        metrics.count_code_replay("made-up-" + "x" * 50)
        metrics.count_token("urn:made:up", "made-up")
    assert sample("identity_authorization_code_replays_total", client_id="other") == replays + 1
    assert sample("identity_tokens_issued_total", grant_type="other", client_id="other") == tokens + 1


def test_latency_by_endpoint_name_or_unmatched(client):
    ok = sample("identity_request_duration_seconds_count", endpoint="ops.healthz")
    missing = sample("identity_request_duration_seconds_count", endpoint="unmatched")
    client.get("/healthz")
    client.get("/no/such/path/" + "x" * 20)
    assert sample("identity_request_duration_seconds_count", endpoint="ops.healthz") == ok + 1
    assert sample("identity_request_duration_seconds_count", endpoint="unmatched") == missing + 1
    text = client.get("/metrics").text
    assert "/no/such/path" not in text  # paths never become labels


def test_a_database_failure_is_counted(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError
    from identity.services import readiness

    def broken():
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(readiness, "readiness_problem", broken)
    before = sample("identity_database_errors_total")
    assert client.get("/readyz").status_code == 503
    assert sample("identity_database_errors_total") == before + 1


# --- the server as deployed: two workers, one sum ---------------------------------------------------------------


@pytest.mark.server
@pytest.mark.database_independent
def test_two_workers_add_up(tmp_path):
    directory = tmp_path / "metrics"
    seed = password_grant_seed("metered", SECRET, "meg", PASSWORD)
    with seeded_server(tmp_path, seed, name="metrics", env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}) as server:
        # unknown users (no lockout) cost an Argon2 hash each: concurrent calls land on both workers
        calls = [lambda i=i: token_request(server.url, "metered", SECRET, grant_type="password",
                                           username=f"nobody-{i}", password="wrong-password-123456")
                 for i in range(16)]
        responses = run_together(*calls)
        assert [r.status_code for r in responses] == [400] * 16, responses
        good = token_request(server.url, "metered", SECRET, grant_type="password", username="meg",
                             password=PASSWORD, scope="openid")
        assert good.status_code == 200, good.text

        # per worker: each one's own file holds part of the failures
        per_worker = []
        for path in glob.glob(str(directory / "counter_*.db")):
            merged = MultiProcessCollector.merge([path], accumulate=True)
            values = [s.value for m in merged for s in m.samples
                      if s.name == "identity_sign_ins_total" and s.labels == {"result": "failure"}]
            per_worker.append(sum(values))
        assert len([v for v in per_worker if v > 0]) == 2, per_worker  # both workers served some
        assert sum(per_worker) == 16

        # any one scrape, whichever worker answers it, adds them up
        for _ in range(4):
            text = requests.get(server.url + "/metrics", timeout=10).text
            assert scraped(text, "identity_sign_ins_total", result="failure") == 16
            assert scraped(text, "identity_sign_ins_total", result="success") == 1
            assert scraped(text, "identity_tokens_issued_total", grant_type="password", client_id="metered") == 1


@pytest.mark.server
@pytest.mark.database_independent
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_the_server_makes_and_removes_its_own_directory(tmp_path, kind):
    """Without PROMETHEUS_MULTIPROC_DIR, gunicorn.conf.py or granian's launcher makes a fresh directory
    and removes it at exit."""
    uri = "sqlite:///" + str(tmp_path / "own.db")
    server = SERVERS[kind](uri, workers=2, name="own-dir", log_dir=tmp_path,
                           env={"FLASK_TRUST_PROXY_HOPS": "1"})
    server.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    before = set(glob.glob("/tmp/portcullis-metrics-*"))
    with server:
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert "identity_request_duration_seconds_bucket" in text
        # a directory made since this server started whose files its workers wrote (older ones, left by
        # killed servers, may name process ids that are reused now)
        made = [d for d in set(glob.glob("/tmp/portcullis-metrics-*")) - before if _owned_by(d, server)]
        assert len(made) == 1, made
        # behind a trusted proxy hop, the forwarded address decides: an outside client is refused
        outside = requests.get(server.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.5"}, timeout=10)
        assert outside.status_code == 404
    assert not os.path.exists(made[0])


def _owned_by(directory: str, server) -> bool:
    """Whether a metrics directory holds files of this server's workers."""
    pids = {int(m.group(1)) for m in (re.search(r"_(\d+)\.db$", p) for p in os.listdir(directory)) if m}
    return bool(pids) and any(_parent(pid) == server.process.pid for pid in pids)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.parametrize("app_config", [{"DISCOVERY_DOCUMENT_CACHE_SECONDS": 300}])
def test_a_response_before_flask_is_named_by_its_route(client):
    """The second discovery request is answered from cache before Flask; it keeps its endpoint name."""
    before = sample("identity_request_duration_seconds_count", endpoint="discovery.openid_configuration")
    assert client.get("/.well-known/openid-configuration").status_code == 200
    assert client.get("/.well-known/openid-configuration").status_code == 200
    after = sample("identity_request_duration_seconds_count", endpoint="discovery.openid_configuration")
    assert after == before + 2


def test_password_changes_by_channel_and_code_replays(app, client, flow_clients, runner):
    from actions import AuthActions, OAuthActions
    from conftest import ALICE_PASSWORD

    channels = {c: sample("identity_password_changes_total", channel=c) for c in ("api", "cli")}
    replays = sample("identity_authorization_code_replays_total", client_id="web")
    AuthActions(client).login()
    oauth = OAuthActions(client)
    token, params = oauth.code_flow(client_id="web", scope="openid IdentityServerApi")
    assert token.status_code == 200
    again = oauth.token("web", grant_type="authorization_code", code=params["code"],
                        redirect_uri=OAuthActions.REDIRECTS["web"])
    assert again.status_code == 400
    assert sample("identity_authorization_code_replays_total", client_id="web") == replays + 1

    new = "copper-lantern-orchard-73"
    api_token = oauth.token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                            scope="IdentityServerApi").get_json()["access_token"]  # the replay revoked the first
    changed = client.post("/localapi/password", headers={"Authorization": "Bearer " + api_token},
                          json={"current_password": ALICE_PASSWORD, "new_password": new, "confirm_password": new})
    assert changed.status_code == 204
    assert runner.invoke(args=["users", "set-password", "alice"], input=ALICE_PASSWORD + "\n").exit_code == 0
    assert sample("identity_password_changes_total", channel="api") == channels["api"] + 1
    assert sample("identity_password_changes_total", channel="cli") == channels["cli"] + 1


def test_a_password_grant_refused_for_the_second_factor_is_no_successful_sign_in(app, client, flow_clients, step_clock):
    """The sign-in page counts a right password with a second factor to come as nothing yet; the
    password grant counted it a success, and then refused it (it has no second step)."""
    from actions import OAuthActions
    from conftest import ALICE_PASSWORD
    from mfa_actions import enrol_user

    enrol_user(app)
    before = {r: sample("identity_sign_ins_total", result=r) for r in metrics.SIGN_IN_RESULTS}
    refused = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                         scope="openid")
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert {r: sample("identity_sign_ins_total", result=r) for r in metrics.SIGN_IN_RESULTS} == before
