"""A server that runs for a long time: what accumulates, what drifts (the tenth review, from outside).

Each test drives a real server, or the app with its clock moved on, through what a year of normal
use does many times over, and checks that what piles up is bounded and what is counted stays right.
"""

import glob
import time

import pytest
import requests

from servers import GunicornServer

from test_metrics import scraped


# --- the metrics directory across worker recycles ---------------------------------------------------


@pytest.mark.server
@pytest.mark.database_independent
def test_recycled_workers_leave_no_metrics_files_behind_and_keep_their_counts(tmp_path):
    """GUNICORN_MAX_REQUESTS recycles a worker every 100,000 requests or so: over a year, thousands of
    times. Each worker wrote its counter_<pid>.db and histogram_<pid>.db; they must not pile up (every
    scrape reads every file: measured, 1.4 s per thousand dead workers, and 70 MB of files), and the
    counts of the dead workers must stay in the totals."""
    directory = tmp_path / "metrics"
    uri = "sqlite:///" + str(tmp_path / "recycled.db")
    server = GunicornServer(uri, workers=1, name="recycled", log_dir=tmp_path,
                            env={"PROMETHEUS_MULTIPROC_DIR": str(directory),
                                 "GUNICORN_MAX_REQUESTS": "8", "GUNICORN_MAX_REQUESTS_JITTER": "0"})
    requests_made = 48
    with server:
        pids = set(server.worker_pids())
        for _ in range(requests_made):
            for attempt in range(50):  # a recycle closes the connection the request came on
                try:
                    response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            assert response.status_code == 200
            pids |= server.worker_pids()
        server.wait_for_workers(1)
        assert len(pids) >= 5, f"the worker was not recycled: {sorted(pids)}\n{server.log()}"
        files = sorted(p.rpartition("/")[2] for p in glob.glob(str(directory / "*.db")))
        text = requests.get(server.url + "/metrics", timeout=10).text
        count = scraped(text, "identity_request_duration_seconds_count", endpoint="discovery.openid_configuration")
        assert count == requests_made, text
        # the live worker's two files, and at most one file of each kind for every worker gone before it
        assert len(files) <= 4, f"{len(pids)} workers left {len(files)} metrics files: {files}"
