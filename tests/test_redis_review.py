"""The rate limits' Redis (RATELIMIT_STORAGE_URI) failing under a running provider: stopped,
paused, full, restarted empty. Each test runs against a redis-server of this module's own
(tests/redis_review_support.py), never the suite's shared one."""

from __future__ import annotations

import logging

import pytest

from redis_review_support import own_redis, redis_store, redis_waits  # noqa: F401  (own_redis, redis_store: fixtures)

pytestmark = pytest.mark.database_independent

NO_FALLBACK = {"RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": False}


@pytest.fixture
def app_config(redis_store, request):  # noqa: F811
    """The app on this module's Redis; a test's own settings through indirect parametrization."""
    return {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": redis_store.url, "PROPAGATE_EXCEPTIONS": False,
            **getattr(request, "param", {})}


def limit_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rate limit storage" in r.getMessage().lower()]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_SENSITIVE": "3 per minute"}], indirect=True)
def test_a_refused_link_while_redis_is_full_is_answered_and_counted_in_memory(client, redis_store):
    """A link that does not work is counted after its answer (deduct_when): a Redis that is full
    (maxmemory, noeviction) still reads, so the check passed, and the count's write failed after
    the view had answered: a 500 with a traceback, every time, and the link-guessing limit counted
    nothing. The count now goes to the in-memory fallback, as any other count does."""
    assert client.get("/account/verify-email?token=nope").status_code == 400
    redis_store.fill()
    statuses = [client.get("/account/verify-email?token=nope").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429], f"refused links on a full Redis: {statuses}"


@pytest.mark.parametrize("app_config", [NO_FALLBACK], indirect=True)
def test_a_refused_link_while_redis_is_full_without_fallback_is_answered_and_logged(client, redis_store, caplog):
    """Without the fallback the link's own answer stands (the view has run: a 503 would say it had
    not), and the count that could not be written is logged, not a 500 with a traceback."""
    redis_store.fill()
    caplog.set_level(logging.WARNING)
    response = client.get("/account/verify-email?token=nope")
    assert response.status_code == 400, f"refused link on a full Redis, no fallback: {response.status_code}"
    assert any("not counted" in line for line in limit_lines(caplog)), limit_lines(caplog)


@pytest.mark.parametrize("app_config", [{**NO_FALLBACK, "RATELIMIT_HEADERS_ENABLED": True}], indirect=True)
def test_redis_stopped_while_a_request_runs_does_not_make_its_answer_a_500(app, client, redis_store, caplog):
    """With RATELIMIT_HEADERS_ENABLED the X-RateLimit-* headers are read from the store after the
    view: Redis stopped after the request's count (a restart, a crash) raised there without the
    fallback, a bare 500 for a page that had been served. The page is answered without the headers,
    and the line says why."""
    stop = []

    @app.after_request  # runs before Flask-Limiter's own after-request step (registered earlier)
    def redis_goes_away(response):
        if stop:
            redis_store.stop()
        return response

    assert client.get("/account/login").headers.get("X-RateLimit-Limit")
    stop.append(True)
    caplog.set_level(logging.WARNING)
    response = client.get("/account/login")
    assert response.status_code == 200, f"Redis stopped during the request: {response.status_code}"
    assert "X-RateLimit-Limit" not in response.headers
    assert any("rate limit storage unavailable" in line for line in limit_lines(caplog)), limit_lines(caplog)


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_TIMEOUT_SECONDS": 0.6}], indirect=True)
def test_a_paused_redis_costs_a_request_its_timeout_once_not_twice(client, redis_store, monkeypatch):
    """A Redis that stops answering (CLIENT PAUSE, DEBUG SLEEP, a long command) cost the request
    that found it so RATELIMIT_STORAGE_TIMEOUT_SECONDS for its count, and then as much again:
    Flask-Limiter, counting the same request again in memory, first asked the store whether it was
    back (due whenever the worker's last such check was a second old or more). The waits are
    counted, not timed: each of redis-py's reads waits under the 0.6 s timeout, and the request
    on the paused Redis runs one out, its count's, not a second one for the check."""
    from identity.extensions import limiter

    with redis_waits(monkeypatch) as waits:
        assert client.get("/account/login").status_code == 200
        assert waits.reads and not waits.timed_out, f"Redis answering: {waits.timed_out}"
        limiter._Limiter__check_backend_count, limiter._Limiter__last_check_backend = 0, 0.0  # a long-running worker
        redis_store.cli("CLIENT", "PAUSE", "2500", "ALL")
        response = client.get("/account/login")
    assert response.status_code == 200
    assert waits.timeouts == [0.6], f"redis-py's socket timeouts {waits.timeouts} (configured 0.6 s)"
    assert len(waits.timed_out) == 1, \
        f"a request on a paused Redis ran out the 0.6 s timeout {len(waits.timed_out)} times: {waits.timed_out}"


@pytest.mark.parametrize("app_config", [{"RATELIMIT_SENSITIVE": "3 per minute"}], indirect=True)
def test_redis_back_after_an_outage_is_used_again_and_the_log_says_so(client, redis_store, caplog):
    """Redis stopped and started again: each worker goes back to it without a restart, but only
    Flask-Limiter's "Rate limit storage unreachable" warning reached the log; its "recovered" line
    is at INFO, below what the server's log writes, so the log said the limits were counted per
    worker long after they were shared again. It is a warning now, like the readiness's "ready again"."""
    import time

    from actions import AuthActions

    caplog.set_level(logging.WARNING)
    redis_store.stop()
    assert client.get("/account/login").status_code == 200
    assert any("unreachable" in line for line in limit_lines(caplog)), limit_lines(caplog)
    redis_store.start()
    time.sleep(1.1)  # the first check of the store is a second after it was found unreachable
    statuses = [AuthActions(client).login(password="wrong-password-entirely").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429], statuses
    assert int(redis_store.cli("DBSIZE")) > 0, "the counts after Redis came back are not in Redis"
    assert any("again" in line for line in limit_lines(caplog)), f"no line says Redis is used again: {limit_lines(caplog)}"


@pytest.fixture
def hung_listener():
    """A host that accepts connections and never answers (a half-open path, a stuck process)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


def get_unless_it_hangs(client, path: str, limit: float = 20) -> int | None:
    """A request's status, or None if it has not answered after `limit` seconds: a safety bound,
    so that a request that hangs fails the test instead of blocking it, never a measure of its wait."""
    import threading

    result = []
    thread = threading.Thread(target=lambda: result.append(client.get(path).status_code), daemon=True)
    thread.start()
    thread.join(limit)
    return result[0] if result else None


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_TIMEOUT_SECONDS": 0.5}], indirect=True)
def test_redis_behind_sentinel_is_held_to_the_storage_timeout(app_config, database_uri, _migrated, redis_store,
                                                             hung_listener, tmp_path, monkeypatch):
    """RATELIMIT_STORAGE_TIMEOUT_SECONDS was given to redis://, rediss:// and redis+unix:// stores
    only: with redis+sentinel:// (Redis's own high availability) a paused master held each request
    that counted for redis-py's 5 s default instead of 0.5 s, and so did a sentinel that does
    not answer, on every request that looked the master up. The waits are counted, not timed:
    every connection to the sentinel and to its master is made with the 0.5 s timeouts, every
    reply is waited for under 0.5 s, and the request runs one such wait out."""
    from app import create_app
    from conftest import HttpsClient, close_connections, make_config
    from redis_review_support import OwnSentinel

    sentinel = OwnSentinel(tmp_path, redis_store).start()
    try:
        for uri in (sentinel.url, f"redis+sentinel://127.0.0.1:{hung_listener}/mymaster"):
            with redis_waits(monkeypatch) as waits:
                app = create_app(make_config(database_uri, **{**app_config, "RATELIMIT_STORAGE_URI": uri}))
                app.test_client_class = HttpsClient
                client = app.test_client()
                if uri == sentinel.url:
                    assert client.get("/account/login").status_code == 200
                    assert int(redis_store.cli("DBSIZE")) > 0, "the sentinel's master does not count"
                    assert not waits.timed_out, f"the sentinel and its master answering: {waits.timed_out}"
                    redis_store.cli("CLIENT", "PAUSE", "3000", "ALL")
                status = get_unless_it_hangs(client, "/account/login")
            close_connections(app)
            where = uri.split("@")[-1]
            assert status == 200, f"{where}: {status} (None: no answer in 20 s)"
            assert waits.connections, f"{where}: no connection made"
            assert waits.timeouts == [0.5], f"{where}: redis-py's socket timeouts {waits.timeouts} (configured 0.5 s)"
            assert len(waits.timed_out) == 1, \
                f"{where}: the 0.5 s timeout ran out {len(waits.timed_out)} times: {waits.timed_out}"
    finally:
        sentinel.stop()


def test_a_full_redis_is_not_taken_back_every_second(client, redis_store, caplog):
    """A full Redis (maxmemory, noeviction) answers PING, Flask-Limiter's check that it is back,
    and refuses every count: each worker took it back at every check, a second after losing it,
    and lost it at the next request, logging it unreachable (and back) every second for as long
    as Redis stayed full. The check is a count now, and its schedule backs off (1, 2, 4, ... s)."""
    import time

    caplog.set_level(logging.WARNING)
    assert client.get("/account/login").status_code == 200
    redis_store.fill()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert client.get("/account/login").status_code == 200
        time.sleep(0.05)
    lines = limit_lines(caplog)
    assert len(lines) == 1, f"{len(lines)} lines in 3.5 s of a full Redis: {lines[:4]}"


@pytest.mark.parametrize("app_config", [NO_FALLBACK], indirect=True)
def test_a_redis_cluster_gone_without_fallback_is_a_503_not_a_500(app_config, database_uri, _migrated, tmp_path, caplog):
    """With a redis+cluster:// store and no fallback, the cluster gone (no node answers) raised
    redis-py's RedisClusterUnreachableError, which is not a RedisError, the store's errors the 503
    was made for: every request that counted was a 500 with a traceback, not the documented 503
    with Retry-After and its "rate limit storage unavailable" line."""
    from app import create_app
    from conftest import HttpsClient, close_connections, make_config
    from redis_review_support import OwnRedis

    node = OwnRedis(tmp_path, cluster=True).start()
    try:
        app = create_app(make_config(database_uri, **{**app_config, "RATELIMIT_STORAGE_URI": node.url}))
        app.test_client_class = HttpsClient
        client = app.test_client()
        assert client.get("/account/login").status_code == 200
        node.stop()
        caplog.set_level(logging.WARNING)
        response = client.get("/account/login")
        close_connections(app)
    finally:
        node.stop()
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5"), f"cluster gone, no fallback: {response.status_code}"
    assert any("rate limit storage unavailable" in line for line in limit_lines(caplog)), limit_lines(caplog)


def test_a_paused_redis_cluster_is_held_to_the_storage_timeout(database_uri, _migrated, tmp_path, monkeypatch):
    """redis-py's cluster client retries a failed command 10 times with a growing backoff (up to
    1 s each): a cluster node paused (CLIENT PAUSE) held a request that counted 2 s with the 0.5 s
    timeout. A request now waits the command's timeout once, then counts in memory. The waits are
    counted, not timed: every connection to the node is made with the 0.5 s timeouts, every reply
    is waited for under 0.5 s, and the request on the paused node runs one such wait out."""
    from app import create_app
    from conftest import HttpsClient, close_connections, make_config
    from redis_review_support import OwnRedis

    node = OwnRedis(tmp_path, cluster=True).start()
    try:
        with redis_waits(monkeypatch) as waits:
            app = create_app(make_config(database_uri, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=node.url,
                                         RATELIMIT_STORAGE_TIMEOUT_SECONDS=0.5, PROPAGATE_EXCEPTIONS=False))
            app.test_client_class = HttpsClient
            client = app.test_client()
            assert client.get("/account/login").status_code == 200
            assert waits.connections and not waits.timed_out, f"the cluster answering: {waits.timed_out}"
            node.cli("CLIENT", "PAUSE", "3000", "ALL")
            status = get_unless_it_hangs(client, "/account/login")
        close_connections(app)
    finally:
        node.stop()
    assert status == 200, f"a paused cluster node: {status} (None: no answer in 20 s)"
    assert waits.timeouts == [0.5], \
        f"a paused cluster node: redis-py's socket timeouts {waits.timeouts} (configured 0.5 s)"
    assert len(waits.timed_out) == 1, \
        f"a paused cluster node: the 0.5 s timeout ran out {len(waits.timed_out)} times: {waits.timed_out}"


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_URI": "redis://:wrong-redis-password-123@127.0.0.1:{port}/0"},
                                        {"RATELIMIT_STORAGE_URI": "redis://:right-redis-password@127.0.0.1:{port}/99"}], indirect=True)
def test_the_log_says_why_redis_is_not_used(app_config, database_uri, _migrated, redis_store, caplog):
    """A Redis that refuses the password, or has no such database number, was logged as every
    outage is: "Rate limit storage unreachable - falling back to in-memory storage", the same
    words as a Redis down, with nothing to tell the operator what to fix (each worker counting
    on its own for good). The line names redis-py's error now, never the URI's password."""
    from app import create_app
    from conftest import HttpsClient, close_connections, make_config

    redis_store.cli("CONFIG", "SET", "requirepass", "right-redis-password")
    uri = app_config["RATELIMIT_STORAGE_URI"].format(port=redis_store.port)
    caplog.set_level(logging.WARNING)
    try:
        app = create_app(make_config(database_uri, **{**app_config, "RATELIMIT_STORAGE_URI": uri}))
        app.test_client_class = HttpsClient
        assert app.test_client().get("/account/login").status_code == 200
        close_connections(app)
    finally:
        redis_store.cli("-a", "right-redis-password", "--no-auth-warning", "CONFIG", "SET", "requirepass", "")
    lines = limit_lines(caplog)
    assert any(("AuthenticationError" if "wrong" in uri else "DB index") in line for line in lines), lines
    assert not any("-redis-password" in r.getMessage() for r in caplog.records)


def test_behind_sentinel_a_stale_replica_does_not_lift_the_link_limit(database_uri, _migrated, redis_store, tmp_path):
    """With redis+sentinel:// the limits package reads counts from a replica (use_replicas), and
    the limits counted after the answer (a refused reset or verification link: RATELIMIT_SENSITIVE)
    are checked by such a read. A replica cut off from its master keeps serving its old data
    (replica-serve-stale-data, Redis's default) and Sentinel still hands it out: the counts read 0
    for good and link guessing was never refused, with nothing in the log. Counts are read from
    the master now."""
    import time

    from app import create_app
    from conftest import HttpsClient, close_connections, make_config
    from redis_review_support import OwnRedis, OwnSentinel

    (tmp_path / "replica").mkdir()
    replica = OwnRedis(tmp_path / "replica", replica_of=redis_store).start()
    sentinel = OwnSentinel(tmp_path, redis_store).start()
    try:
        deadline = time.monotonic() + 15
        while "master_link_status:up" not in replica.cli("INFO", "replication") or "slave0" not in \
                redis_store.cli("INFO", "replication") or not sentinel_knows_replica(sentinel, replica):
            assert time.monotonic() < deadline, "the replica did not come up"
            time.sleep(0.1)
        replica.cli("REPLICAOF", "127.0.0.1", "1")  # cut off from its master: it keeps its (empty) data
        app = create_app(make_config(database_uri, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=sentinel.url,
                                     RATELIMIT_SENSITIVE="3 per minute", PROPAGATE_EXCEPTIONS=False))
        app.test_client_class = HttpsClient
        client = app.test_client()
        statuses = [client.get("/account/verify-email?token=nope").status_code for _ in range(4)]
        close_connections(app)
    finally:
        sentinel.stop()
        replica.stop()
    assert statuses == [400, 400, 400, 429], f"refused links behind Sentinel with a stale replica: {statuses}"


def sentinel_knows_replica(sentinel, replica) -> bool:
    import subprocess

    listed = subprocess.run(["redis-cli", "-p", str(sentinel.port), "SENTINEL", "REPLICAS", "mymaster"],
                            capture_output=True, text=True, timeout=10).stdout
    return str(replica.port) in listed


@pytest.mark.parametrize("app_config", [{"RATELIMIT_SENSITIVE": "3 per minute"}], indirect=True)
def test_a_redis_that_evicts_the_counts_is_named_in_the_log(client, redis_store, caplog):
    """A Redis with maxmemory and a policy that evicts (allkeys-lru, volatile-ttl, ...: a cache's
    settings, in a Redis shared with one) drops the counts when it is full, and the limits with
    them. Here volatile-ttl, another application writing keys that live an hour: the counts (a
    minute) go first, the sign-in limit was never reached, and nothing in the log said why. Each
    worker now reads Redis's policy at its first count, and one that evicts is a warning."""
    import redis

    from actions import AuthActions

    caplog.set_level(logging.WARNING)
    other = redis.Redis(port=redis_store.port)
    for index in range(10):  # another application's data, an hour to live
        other.set(f"cache:{index}", b"x" * 100_000, ex=3600)
    redis_store.cli("CONFIG", "SET", "maxmemory-samples", "64")  # every key looked at: no luck in which goes
    redis_store.cli("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    redis_store.cli("CONFIG", "SET", "maxmemory", str(other.info("memory")["used_memory"] + 50_000))
    statuses = []
    try:
        for attempt in range(5):
            statuses.append(AuthActions(client).login(password="wrong-password-entirely").status_code)
            for index in range(3):  # the other application goes on writing
                other.set(f"cache:{attempt}-{index}", b"x" * 100_000, ex=3600)
    finally:
        redis_store.unfill()
        other.close()
    assert 429 not in statuses, f"the counts were not evicted: {statuses}"  # what the warning is about
    lines = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert lines, f"sign-in statuses {statuses} on an evicting Redis, and no line says why: {limit_lines(caplog)}"
