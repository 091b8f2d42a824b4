"""granian_server.py: the defaults it sets, that the operator's environment wins, and that a reload
stops an old worker only once its successor is ready."""

import sys
import threading
import time
import tomllib

import pytest
import requests

import granian_server
from servers import ROOT, GranianServer

#: the launcher's own SQLite database: .ci/run's PostgreSQL run leaves this out
pytestmark = pytest.mark.database_independent


def test_the_defaults_fill_what_the_environment_leaves_unset():
    env = granian_server.environment({})
    assert env["GRANIAN_INTERFACE"] == "wsgi" and env["GRANIAN_FACTORY"] == "true"
    assert env["GRANIAN_BLOCKING_THREADS"] == "1"
    assert env["GRANIAN_RESPAWN_FAILED_WORKERS"] == "true"
    assert env["GRANIAN_HTTP1_HEADER_READ_TIMEOUT"] == "10000"
    assert env["GRANIAN_PORT"] == "8000" and env["GRANIAN_HOST"] == "0.0.0.0"
    assert int(env["GRANIAN_WORKERS"]) >= 3  # 2 x cores + 1


def test_the_operators_variables_win():
    env = granian_server.environment({"WEB_CONCURRENCY": "5", "PORT": "9000", "GRANIAN_BLOCKING_THREADS": "2",
                                      "GRANIAN_HOST": "127.0.0.1"})
    assert (env["GRANIAN_WORKERS"], env["GRANIAN_PORT"]) == ("5", "9000")
    assert (env["GRANIAN_BLOCKING_THREADS"], env["GRANIAN_HOST"]) == ("2", "127.0.0.1")
    assert granian_server.environment({"GRANIAN_WORKERS": "3", "WEB_CONCURRENCY": "7"})["GRANIAN_WORKERS"] == "3"


def test_the_console_script_and_module_are_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["portcullis-serve"] == "granian_server:main"
    assert "granian_server" in project["tool"]["setuptools"]["py-modules"]
    assert any(dep.startswith("granian") for dep in project["project"]["dependencies"])


class SlowSuccessorServer(GranianServer):
    """The launcher serving tests/slow_start_app.py: each worker after the first takes
    SLOW_START_SECONDS to build the app."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import granian_server; granian_server.main(target='slow_start_app:app')"]

    def process_env(self) -> dict[str, str]:
        env = super().process_env()
        env["PYTHONPATH"] = str(ROOT / "tests")
        return env


@pytest.mark.server
def test_a_reload_stops_the_old_worker_only_once_its_slow_successor_is_ready(tmp_path):
    """Seen in CI: granian alone stops the old worker GRANIAN_RESPAWN_INTERVAL after starting its
    successor; a successor still building the app then left no process listening, and every
    connection was refused until it was done."""
    env = {"SLOW_START_SECONDS": "6", "SLOW_START_MARKER": str(tmp_path / "first-worker-started")}
    with SlowSuccessorServer(f"sqlite:///{tmp_path / 'identity.db'}", workers=1, env=env, log_dir=tmp_path,
                             name="slow-successor") as server:
        (old_worker,) = server.wait_for_workers(1)
        answers: list[int] = []
        failures: list[str] = []
        done = threading.Event()

        def poll():
            while not done.is_set():
                try:
                    answers.append(requests.get(server.url + "/healthz", timeout=5).status_code)
                except requests.RequestException as err:
                    failures.append(f"{type(err).__name__}: {err}")
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            time.sleep(0.5)
            server.reload()
            (new_worker,) = server.wait_for_workers(1, not_in={old_worker}, timeout=60)
            time.sleep(1)
        finally:
            done.set()
            poller.join()
        log = server.log(tail=100_000)
        assert "Stopped old worker-1" in log, log
        # the old worker kept answering for the successor's 6 s, then the successor took over
        refused = [f for f in failures if "Connection refused" in f]
        assert not refused, (len(refused), refused[:1], log)
        assert len(failures) <= 1, failures  # at most the one request queued on the old worker at its stop
        assert answers.count(200) >= 40 and set(answers) == {200}, answers
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        assert new_worker != old_worker
