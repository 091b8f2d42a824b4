"""The app served the way it is deployed: gunicorn with gunicorn.conf.py and two workers."""

import json
import os

import pytest
import requests

from actions import padded_chunks
from servers import GunicornServer

pytestmark = pytest.mark.server


@pytest.fixture
def server_database_uri(tmp_path):
    """PostgreSQL when the suite runs on it (the tables are emptied by the next `app` fixture),
    else a SQLite file of this test's own."""
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if uri and uri.startswith("postgresql"):
        return uri
    return "sqlite:///" + str(tmp_path / "gunicorn.db")


def test_gunicorn_serves_health_and_discovery(server_database_uri, tmp_path):
    with GunicornServer(server_database_uri, workers=2, name="smoke", log_dir=tmp_path) as server:
        health = requests.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200, server.log()

        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, f"{ready.text}\n{server.log()}"

        # Several requests, so that both workers are likely to answer at least one.
        for _ in range(6):
            response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
            assert response.status_code == 200, f"{response.text}\n{server.log()}"
            assert response.headers["Content-Type"].startswith("application/json")
            document = response.json()
            assert document["issuer"] == server.url
            assert document["jwks_uri"] == server.url + "/.well-known/openid-configuration/jwks"
            assert document["token_endpoint"] == server.url + "/connect/token"

        jwks = requests.get(document["jwks_uri"], timeout=10).json()
        assert jwks["keys"], "no signing key published"
        assert all("d" not in key for key in jwks["keys"]), "private key material in the JWKS"

    log = server.log(tail=1000)
    # One access log: the app's JSON lines (written out when the workers stop), not gunicorn's too.
    served = [(line["method"], line["path"], line["status"]) for line in access_lines(log)]
    assert served.count(("GET", "/.well-known/openid-configuration", 200)) == 6, served
    assert "HTTP/1.1" not in log, "gunicorn's access log is off by default"
    assert "Booting worker" in log


def access_lines(log: str) -> list[dict]:
    """The request log's lines: one JSON object per request, with its request id."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"request_id": ')]
    assert lines, log
    return lines


def test_access_log_leaves_out_query_strings(server_database_uri, tmp_path):
    with GunicornServer(server_database_uri, workers=1, name="querylog", log_dir=tmp_path) as server:
        response = requests.get(server.url + "/healthz?code=SECRET-CODE-123&access_token=SECRET-TOKEN-456", timeout=10)
    log = server.log(tail=1000)
    line = access_lines(log)[-1]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["request_id"] == response.headers["X-Request-Id"] and line["ip"] == "127.0.0.1"
    assert isinstance(line["ms"], float)
    assert "SECRET-CODE-123" not in log and "SECRET-TOKEN-456" not in log


def test_chunked_bodies_under_gunicorn_get_the_body_limit(server_database_uri, tmp_path):
    """gunicorn de-chunks a streamed body; over MAX_CONTENT_LENGTH it is 413, within it read whole."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    tail = b"grant_type=no-such-grant"
    with GunicornServer(server_database_uri, workers=1, name="chunked", log_dir=tmp_path) as server:
        too_big = requests.post(server.url + "/connect/token", data=padded_chunks(70 * 1024, tail), headers=form,
                                timeout=10)
        assert too_big.status_code == 413, f"{too_big.status_code} {too_big.text}\n{server.log()}"
        assert too_big.json()["error"] == "invalid_request"
        within = requests.post(server.url + "/connect/token", data=padded_chunks(40 * 1024, tail), headers=form,
                               timeout=10)
        assert within.status_code == 400, f"{within.status_code} {within.text}"
        assert within.json()["error"] == "unsupported_grant_type", "the grant_type after 40 KiB of chunks was read"


# --- gunicorn.conf.py as gunicorn reads it ---------------------------------------------------


PROBE = """
import json, runpy, sys, types
import gunicorn.config
settings = runpy.run_path(sys.argv[1])
known = {s.name for s in gunicorn.config.KNOWN_SETTINGS}
public = {k: v for k, v in settings.items()
          if not k.startswith("_") and not isinstance(v, types.ModuleType) and not callable(v)}
print(json.dumps({"settings": public, "unknown": sorted(set(public) - known)}))
"""


def gunicorn_config(**env) -> dict:
    """The settings gunicorn.conf.py defines under `env` (the file run as gunicorn runs it)."""
    import json
    import subprocess
    import sys

    from servers import GUNICORN_CONF, ROOT

    clean = {k: v for k, v in os.environ.items()
             if k not in ("PORT", "GUNICORN_BIND", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")
             and not k.startswith("GUNICORN_")}
    result = subprocess.run([sys.executable, "-c", PROBE, str(GUNICORN_CONF)],
                            cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["unknown"] == [], f"not gunicorn settings (typos?): {out['unknown']}"
    return out["settings"]


def test_gunicorn_conf_defaults():
    config = gunicorn_config()
    assert config["wsgi_app"] == "app:create_app()"
    assert config["bind"] == ["0.0.0.0:8000"]
    assert config["worker_class"] == "sync"
    assert config["preload_app"] is False
    assert config["timeout"] == 30
    assert 2 <= config["workers"] <= 12
    assert config["max_requests"] > 0 and config["max_requests_jitter"] > 0
    assert config["control_socket_disable"] is True
    assert config["accesslog"] is None, "one access log: the app's"
    log_format = config["access_log_format"]
    assert "%(U)s" in log_format
    for leaky in ("%(r)s", "%(q)s", "%(f)s"):  # request line with query, query, referer
        assert leaky not in log_format


def test_gunicorn_conf_reads_the_environment():
    config = gunicorn_config(PORT="9001", WEB_CONCURRENCY="3", FORWARDED_ALLOW_IPS="10.0.0.5",
                             GUNICORN_TIMEOUT="45")
    assert config["bind"] == ["0.0.0.0:9001"]
    assert config["workers"] == 3
    assert config["forwarded_allow_ips"] == "10.0.0.5"
    assert config["timeout"] == 45
    config = gunicorn_config(GUNICORN_BIND="127.0.0.1:7000, unix:/run/identity.sock", PORT="9001",
                             GUNICORN_ACCESS_LOG="-")
    assert config["bind"] == ["127.0.0.1:7000", "unix:/run/identity.sock"]
    assert config["accesslog"] == "-"


def test_gunicorn_refuses_an_out_of_date_schema_and_stops(tmp_path):
    """Against an empty database the workers refuse to boot, naming the command to run, and the
    master stops (exit code 3, gunicorn's "worker failed to boot") instead of respawning them forever."""
    server = GunicornServer("sqlite:///" + str(tmp_path / "empty.db"), workers=1, name="empty",
                            migrate_first=False, log_dir=tmp_path, start_timeout=15)
    with pytest.raises(Exception) as failure:
        server.start()
    log = server.log(tail=200)
    assert "flask --app app db upgrade" in log, log
    assert "exited with 3" in str(failure.value), f"gunicorn kept running or exited otherwise:\n{log}"


def test_a_worker_timeout_logs_no_query_string(server_database_uri, tmp_path):
    """gunicorn's error log names the request a timed-out worker was serving by its URI: the
    path only, as the access logs do (a reset link's token, an id_token_hint, a login_hint)."""
    import socket
    import time

    with GunicornServer(server_database_uri, workers=1, name="timeout", log_dir=tmp_path,
                        env={"GUNICORN_TIMEOUT": "2"}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            # a body that never finishes arriving: the worker waits for it until the master kills it
            stalled.sendall(b"POST /account/reset-password?token=SECRET-RESET-TOKEN-77 HTTP/1.1\r\n"
                            b"Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                            b"Content-Length: 100\r\n\r\ntoken=")
            deadline = time.monotonic() + 20
            while "WORKER TIMEOUT" not in server.log(tail=1000) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    log = server.log(tail=1000)
    assert "WORKER TIMEOUT" in log, log
    assert "Error handling request POST /account/reset-password" in log, log
    assert "SECRET-RESET-TOKEN-77" not in log, log


def test_gunicorn_access_log_keeps_what_the_caller_chose_on_its_line(server_database_uri, tmp_path):
    """gunicorn's access log, turned on as the docs say, writes the Basic-auth user name (%(u)s)
    and the percent-decoded path (%(U)s), which the caller chooses: a line break or an escape
    sequence in them stays on its line, escaped, and a long path is cut as the app's log cuts it."""
    import base64
    from urllib.parse import quote

    forged = "127.0.0.1 - admin [05/Dec/2026 00 00 00 +0000] GET /forged 200 0"
    basic = base64.b64encode(f"mobile\n{forged}\x1b[2K:secret".encode()).decode()
    with GunicornServer(server_database_uri, workers=1, name="accessuser", log_dir=tmp_path,
                        env={"GUNICORN_ACCESS_LOG": "-"}) as server:
        by_user = requests.get(server.url + "/healthz", headers={"Authorization": f"Basic {basic}"}, timeout=10)
        by_path = requests.get(server.url + "/healthz" + quote(f"\n{forged}\x1b[2K"), timeout=10)
        long_path = requests.get(server.url + "/" + "x" * 4000, timeout=10)
        assert (by_user.status_code, by_path.status_code, long_path.status_code) == (200, 404, 404)
    log = server.log(tail=1000)
    assert not any(line.startswith(forged) for line in log.splitlines()), log
    assert "\x1b" not in log, log
    lines = {r: next(line for line in log.splitlines() if f"rid={r.headers['X-Request-Id']}" in line)
             for r in (by_user, by_path, long_path)}
    assert "- mobile\\n127.0.0.1 - admin" in lines[by_user], lines[by_user]
    assert "GET /healthz\\n127.0.0.1 - admin" in lines[by_path], lines[by_path]
    assert len(lines[long_path]) < 512, lines[long_path]


def test_a_premature_disconnection_at_debug_logs_no_header(server_database_uri, tmp_path):
    """With GUNICORN_LOG_LEVEL=debug gunicorn logs a client that went away in the middle of its
    headers; the line says so, and keeps none of what it had read (a query string, a Basic
    client secret, a cookie)."""
    import socket
    import time

    with GunicornServer(server_database_uri, workers=1, name="premature", log_dir=tmp_path,
                        env={"GUNICORN_LOG_LEVEL": "debug"}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(b"POST /connect/token?code=SECRET-CODE-31 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Authorization: Basic d2ViOlNFQ1JFVC1DTElFTlQtNDI=\r\n"
                           b"Cookie: session=SECRET-COOKIE-53\r\n")
            time.sleep(0.5)
        deadline = time.monotonic() + 10
        while "premature client disconnection" not in server.log(tail=1000) and time.monotonic() < deadline:
            time.sleep(0.2)
    log = server.log(tail=1000)
    assert "premature client disconnection" in log, log
    for secret in ("SECRET-CODE-31", "d2ViOlNFQ1JFVC1DTElFTlQtNDI=", "SECRET-COOKIE-53"):
        assert secret not in log, log
