"""What the metrics cost a request, in-process: `python -m bench.metrics_cost`.

Prints, for this process's own values and for multiprocess mode (a temporary
PROMETHEUS_MULTIPROC_DIR, as under gunicorn), the time of one latency observation, one counter
increment, the layer's own time around an app that does nothing, and GET /healthz through the
app's WSGI stack with and without the metrics layer (that difference is within the noise of a
busy machine; the teardown hook that names the endpoint is the one part the no-op run leaves out).
"""

import os
import subprocess
import sys
import tempfile
import time

N = 20_000


def _best(fn, n: int = N, rounds: int = 5) -> float:
    """Microseconds per call, best of `rounds` (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def measure() -> None:
    from app import create_app
    from identity.services import metrics
    from identity.web.metrics import ENDPOINT_KEY, Metrics

    tmp = tempfile.mkdtemp()
    app = create_app({"TESTING": True, "ENVIRONMENT": "testing", "SECRET_KEY": "bench", "LOG_REQUESTS": False,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.db", "RATELIMIT_ENABLED": False,
                      "PURGE_INTERVAL_SECONDS": 0})
    with_layer = app.wsgi_app
    layer = with_layer
    while not isinstance(layer, Metrics):  # the layer's place: identity/plumbing/wsgi.py
        parent, layer = layer, layer.wsgi_app
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": None, "QUERY_STRING": ""}

    def call():
        for _ in app.wsgi_app(dict(environ), lambda status, headers, exc_info=None: None):
            pass

    mode = "multiprocess" if metrics.multiprocess_dir() else "in-process"
    call()
    observe = _best(lambda: metrics.observe_request("ops.healthz", 0.001))
    count = _best(lambda: metrics.count_lockout())
    def noop(environ, start_response):
        environ[ENDPOINT_KEY] = "ops.healthz"  # as the teardown hook leaves it
        return [b""]

    alone = Metrics(app, noop)
    around_noop = _best(lambda: alone(dict(environ), None)) - _best(lambda: noop(dict(environ), None))
    full = bare = float("inf")
    for _ in range(5):  # alternately, so both see the same load on the machine
        full = min(full, _best(call, n=N // 4, rounds=1))
        parent.wsgi_app = layer.wsgi_app  # the same stack without the metrics layer
        bare = min(bare, _best(call, n=N // 4, rounds=1))
        parent.wsgi_app = layer
    print(f"{mode:>12}: observe {observe:.2f} µs, counter inc {count:.2f} µs, the layer around a no-op app "
          f"{around_noop:.2f} µs; "
          f"GET /healthz {full:.1f} µs with the layer, {bare:.1f} µs without: {full - bare:+.1f} µs a request")


if __name__ == "__main__":
    if "--child" in sys.argv:
        measure()
    else:
        measure()
        with tempfile.TemporaryDirectory() as directory:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
            subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child"], env=env, check=True)
