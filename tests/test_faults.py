"""Faults, caused for real: the database goes away while the server runs, and a server worker
is killed with SIGKILL during and after requests.

Database down, by database:
- PostgreSQL (or any database over TCP): the app talks to it through a small TCP forwarder on
  loopback. Stopping the forwarder resets every open connection and refuses new ones, which is
  what a crashed database server or a network partition looks like to the app; starting it again
  on the same port is the database coming back.
- SQLite: the database lives in a directory of its own, which is renamed away (a volume that went
  missing) and back. SQLite keeps using files it already has open, so for this test the app opens
  a connection per request (NullPool) and meets the missing file at the next request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from actions import AuthActions, OAuthActions
from app import create_app
from conftest import ALICE_PASSWORD, DEMO_SEED, HttpsClient, make_config
from identity.services.schema import ensure_schema
from identity.extensions import db
from identity.models import AuditEvent, UserSession
from servers import AppServer, csrf_from, sign_in, token_request

NEW_PASSWORD = "violet-anchor-meadow-482"
LEAKS = re.compile(r"Traceback|File \"|psycopg|sqlite3|OperationalError|sqlalchemy|DBAPIError|object at 0x", re.I)


# --- a database that can be taken away ------------------------------------------------------------


class TcpProxy:
    """Forward 127.0.0.1:<port> to a TCP server; stop() drops every connection and refuses new ones."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "TcpProxy":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            _close(conn, reset=True)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client, reset=True)
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    _close(client, reset=True)
                    _close(upstream, reset=True)
                    return
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                with self._lock:
                    self._connections.discard(conn)
                _close(conn)


def _close(conn: socket.socket, reset: bool = False) -> None:
    try:
        if reset:  # RST, as when the other end dies, rather than an orderly FIN
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
    except OSError:
        pass


class DatabaseFault:
    """A database URI for the app, and how to take that database away and bring it back."""

    def __init__(self, database_uri: str, tmp_path: Path):
        url = make_url(database_uri)
        self.networked = url.get_backend_name() != "sqlite"
        if self.networked:
            self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
            self.uri = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
            self.engine_options = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 3}}
        else:
            self.directory = tmp_path / "database"
            self.directory.mkdir()
            self.uri = "sqlite:///" + str(self.directory / "identity.db")
            self.engine_options = {"poolclass": NullPool}
        self.down = False
        self.drop_open_connections = []  # for SQLite: what a stopped proxy does to open TCP connections

    def take_down(self) -> None:
        if self.networked:
            self.proxy.stop()
        else:
            self.directory.rename(self.directory.with_name("database-gone"))
            for drop in self.drop_open_connections:  # an open file would outlive the rename
                drop()
        self.down = True

    def bring_back(self) -> None:
        if not self.down:
            return
        if self.networked:
            self.proxy.start()
        else:
            self.directory.with_name("database-gone").rename(self.directory)
        self.down = False

    def close(self) -> None:
        self.bring_back()
        if self.networked:
            self.proxy.stop()


@pytest.fixture
def db_fault(app, database_uri, tmp_path):
    """The suite's database (emptied by `app`) behind a fault switch; SQLite gets a file of its own."""
    fault = DatabaseFault(database_uri, tmp_path)
    yield fault
    fault.close()


@pytest.fixture
def fault_app(db_fault):
    """The app on the database behind the fault switch, migrated and seeded."""
    from identity.services.seed import apply_seed, load_seed

    # PROPAGATE_EXCEPTIONS off, as in production: an error the handlers miss becomes a 500 here
    # instead of an exception in the test.
    app = create_app(make_config(db_fault.uri, SQLALCHEMY_ENGINE_OPTIONS=db_fault.engine_options,
                                 PROPAGATE_EXCEPTIONS=False))
    with app.app_context():
        ensure_schema()
        apply_seed(load_seed(DEMO_SEED.read_text()))
        db.session.remove()
    app.test_client_class = HttpsClient
    db_fault.drop_open_connections.append(lambda: app.extensions.get("identity_autocommit") and
                                          app.extensions["identity_autocommit"].close())
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def answered(what: str, request, *args, **kwargs):
    """Make a test-client request; an exception escaping the app (its error handlers failed too,
    which a real server turns into a bare 500) fails the test with a clear message."""
    try:
        return request(*args, **kwargs)
    except Exception as err:
        escaped = f"{type(err).__name__}: {str(err).splitlines()[0]}"
    pytest.fail(f"{what}: the app's error handling itself failed, so a real server answers a bare 500: {escaped}")


def assert_clear_503(response, what: str) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == 503, f"{what}: {response.status_code}\n{body[:2000]}"
    assert not LEAKS.search(body), f"{what}: the body leaks internals:\n{body[:2000]}"
    assert response.headers.get("Retry-After"), f"{what}: no Retry-After"
    assert response.headers.get("X-Request-Id"), f"{what}: no request id"
    return body


# --- database down at request time ----------------------------------------------------------------


def test_database_down_answers_503_in_each_audiences_shape_and_recovers(fault_app, db_fault):
    client = fault_app.test_client()
    oauth = OAuthActions(client)
    assert AuthActions(client).login().status_code == 302
    service_token = oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi")
    assert service_token.status_code == 200

    db_fault.take_down()

    page = answered("a page for a signed-in user", client.get, "/")  # the session is looked up in the database
    body = assert_clear_503(page, "a page")
    assert page.mimetype == "text/html" and "temporarily unavailable" in body

    token = answered("the token endpoint", oauth.token, "service", grant_type="client_credentials", scope="IdentityServerApi")
    assert_clear_503(token, "the token endpoint")
    assert token.get_json()["error"] == "temporarily_unavailable"
    assert "no-store" in token.headers["Cache-Control"]

    api = answered("the local API", client.get, "/localapi/account", headers={"Authorization": "Bearer " + service_token.get_json()["access_token"]})
    assert_clear_503(api, "the local API")
    assert api.mimetype == "application/problem+json" and api.get_json()["status"] == 503

    login = answered("the login page", client.get, "/account/login")
    if login.status_code != 200:
        assert_clear_503(login, "the login page")

    ready = answered("/readyz", client.get, "/readyz")
    assert ready.status_code == 503
    reason = ready.get_json()["reason"]
    assert "database" in reason and "Traceback" not in reason
    password = make_url(db_fault.uri).password
    assert db_fault.uri not in reason and not (password and password in reason), "no connection details"
    assert client.get("/healthz").status_code == 200, "the process itself is fine"

    db_fault.bring_back()

    # Back by itself, at the very next request: no restart, no stale connection served.
    assert client.get("/readyz").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/diagnostics").status_code == 200, "the session survived the outage"
    assert oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").status_code == 200
    assert AuthActions(fault_app.test_client()).login().status_code == 302


def test_sign_in_during_the_outage_is_refused_cleanly_and_works_after(fault_app, db_fault):
    client = fault_app.test_client()
    page = client.get("/account/login")
    assert page.status_code == 200
    token = csrf_from(page.get_data(as_text=True))

    db_fault.take_down()
    response = answered("sign-in", client.post, "/account/login",
                        data={"csrf_token": token, "username": "alice", "password": ALICE_PASSWORD})
    assert_clear_503(response, "sign-in")

    db_fault.bring_back()
    response = client.post("/account/login", data={"csrf_token": token, "username": "alice", "password": ALICE_PASSWORD})
    assert response.status_code == 302


def test_database_errors_are_logged_once_without_secrets(fault_app, db_fault, caplog):
    client = fault_app.test_client()
    db_fault.take_down()
    with caplog.at_level("INFO"):
        assert_clear_503(client.post("/connect/token", data={"grant_type": "client_credentials", "scope": "IdentityServerApi"},
                                     headers={"Authorization": "Basic c2VydmljZTpzZXJ2aWNlLXNlY3JldC1jaGFuZ2UtbWU="}),
                         "token")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors, "the outage was logged"
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "service-secret-change-me" not in logged
    if db_fault.networked:
        assert make_url(db_fault.uri).password not in logged, "the database password was logged"


# --- the same, as deployed: the default server (granian) in front of PostgreSQL ---------------------------------------------


@pytest.mark.server
def test_the_server_answers_503_while_the_database_is_down_and_recovers(db_fault, tmp_path):
    if not db_fault.networked:
        pytest.skip("needs a database over TCP (set FLASK_SQLALCHEMY_DATABASE_URI to PostgreSQL)")
    with AppServer(db_fault.uri, workers=2, name="faults", log_dir=tmp_path) as server:
        server.cli(["seed", str(DEMO_SEED)])
        browser = requests.Session()
        assert sign_in(browser, server.url, "alice", ALICE_PASSWORD).status_code == 302, server.log()

        db_fault.take_down()
        for attempt in range(4):  # both workers
            page = browser.get(server.url + "/", timeout=30, headers={"X-Request-Id": f"outage-{attempt}"})
            assert page.status_code == 503, f"{page.status_code}\n{page.text[:1000]}\n{server.log()}"
            assert not LEAKS.search(page.text)
            token = token_request(server.url, "service", "service-secret-change-me", grant_type="client_credentials")
            assert token.status_code == 503 and token.json()["error"] == "temporarily_unavailable"
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 503
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200

        db_fault.bring_back()
        for _ in range(4):
            assert browser.get(server.url + "/diagnostics", timeout=30, allow_redirects=False).status_code == 200, server.log()
            assert token_request(server.url, "service", "service-secret-change-me",
                                 grant_type="client_credentials").status_code == 200
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 200
    log = server.log(tail=5000)
    assert "Traceback" not in log, server.log(tail=200)
    # The outage is logged as structured lines an operator can match to the requests.
    outage = [line for line in log.splitlines() if "database unavailable" in line]
    assert outage, f"the outage was not logged:\n{server.log(tail=200)}"
    for attempt in range(4):
        assert any(json_line(line).get("request_id") == f"outage-{attempt}" for line in outage), \
            "no structured (JSON) error line with the request id:\n" + "\n".join(outage[:6])


def json_line(line: str) -> dict:
    """The JSON object a log line holds, or {} when it holds none."""
    try:
        value = json.loads(line[line.index("{"):])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- a worker killed mid-request ------------------------------------------------------------------------


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def server_database_uri(app, database_uri, tmp_path):
    """PostgreSQL when the suite runs on it (emptied by `app`), else a SQLite file of this test's own."""
    if database_uri.startswith("postgresql"):
        return database_uri
    return "sqlite:///" + str(tmp_path / "gunicorn.db")


@pytest.fixture
def server(server_database_uri, tmp_path):
    with AppServer(server_database_uri, workers=2, name="kill", log_dir=tmp_path) as running:
        running.cli(["seed", str(DEMO_SEED)])
        yield running


def can_sign_in(server, password) -> bool:
    return sign_in(requests.Session(), server.url, "alice", password).status_code == 302


@pytest.mark.server
def test_workers_killed_after_a_password_change_lose_nothing(server):
    browser = requests.Session()
    assert sign_in(browser, server.url, "alice", ALICE_PASSWORD).status_code == 302
    page = browser.get(server.url + "/account/password", timeout=30)
    changed = browser.post(server.url + "/account/password", timeout=30, data={
        "csrf_token": csrf_from(page.text), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 200, changed.text[:2000]

    before = server.wait_for_workers(2)
    kill(before)  # every worker, right after the answer
    server.wait_for_workers(2, not_in=before)
    server.wait_until_serving(30)  # granian refuses connections until a new worker listens

    assert can_sign_in(server, NEW_PASSWORD), server.log()
    assert not can_sign_in(server, ALICE_PASSWORD)
    assert browser.get(server.url + "/diagnostics", timeout=30, allow_redirects=False).status_code == 200, \
        "the session that changed the password is still valid"


@pytest.mark.server
def test_workers_killed_mid_password_change_leave_it_all_or_nothing(server):
    browser = requests.Session()
    assert sign_in(browser, server.url, "alice", ALICE_PASSWORD).status_code == 302
    page = browser.get(server.url + "/account/password", timeout=30)
    before = server.wait_for_workers(2)

    outcome = {}

    def change():
        try:
            outcome["response"] = browser.post(server.url + "/account/password", timeout=30, data={
                "csrf_token": csrf_from(page.text), "current_password": ALICE_PASSWORD,
                "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        except requests.RequestException as err:
            outcome["error"] = err

    thread = threading.Thread(target=change)
    thread.start()
    time.sleep(0.03)  # inside the request: Argon2 verification and hashing take longer than this
    kill(before)
    thread.join(30)
    server.wait_for_workers(2, not_in=before)
    server.wait_until_serving(30)

    old_works, new_works = can_sign_in(server, ALICE_PASSWORD), can_sign_in(server, NEW_PASSWORD)
    assert old_works != new_works, f"exactly one password works (old {old_works}, new {new_works})"
    response = outcome.get("response")
    if response is not None and response.status_code == 200:
        assert new_works, "a change the server confirmed was lost"


@pytest.mark.server
def test_a_worker_killed_under_load_loses_no_confirmed_sign_in(server, server_database_uri):
    workers = server.wait_for_workers(2)
    stop = threading.Event()
    confirmed: list[requests.Session] = []
    failures: list[str] = []
    lock = threading.Lock()

    def sign_in_repeatedly():
        while not stop.is_set():
            browser = requests.Session()
            try:
                response = sign_in(browser, server.url, "alice", ALICE_PASSWORD)
            except requests.RequestException as err:  # the killed worker's connection
                with lock:
                    failures.append(type(err).__name__)
                continue
            with lock:
                (confirmed.append(browser) if response.status_code == 302 else failures.append(str(response.status_code)))

    threads = [threading.Thread(target=sign_in_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.7)
    victim = sorted(workers)[0]
    kill([victim])
    time.sleep(0.7)
    stop.set()
    for thread in threads:
        thread.join(30)
    server.wait_for_workers(2, not_in={victim})

    assert len(confirmed) >= 4, f"too few sign-ins went through: {len(confirmed)}, failures {failures}\n{server.log()}"
    # Every sign-in the server confirmed is in the database and still signs the browser in.
    engine = create_engine(server_database_uri)
    try:
        with engine.connect() as conn:
            sessions = conn.execute(select(func.count()).select_from(UserSession.__table__)).scalar_one()
            audited = conn.execute(select(func.count()).select_from(AuditEvent.__table__)
                                   .where(AuditEvent.event == "sign_in")).scalar_one()
            if engine.dialect.name == "sqlite":
                assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    finally:
        engine.dispose()
    assert sessions >= len(confirmed) and audited >= len(confirmed), (sessions, audited, len(confirmed))
    for browser in confirmed:
        assert browser.get(server.url + "/diagnostics", timeout=30, allow_redirects=False).status_code == 200

    # Still serving, on both workers.
    for _ in range(6):
        assert requests.get(server.url + "/account/login", timeout=30).status_code == 200
    assert "Traceback" not in server.log(tail=5000), server.log(tail=200)


# --- the rate limits' shared store (Redis) down at request time -----------------------------------


REDIS_URL = os.environ.get("IDENTITY_TEST_REDIS_URL", "")


@pytest.fixture
def redis_fault():
    """Redis (IDENTITY_TEST_REDIS_URL) behind the fault switch: a TcpProxy in front of it."""
    if not REDIS_URL:
        pytest.skip("needs Redis: set IDENTITY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 (.ci/run does)")
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    yield proxy, f"redis://127.0.0.1:{proxy.port}{url.path or '/0'}"
    proxy.stop()


def test_the_rate_limits_store_down_keeps_every_page_up_and_the_limits_on(database_uri, redis_fault, _migrated):
    """With RATELIMIT_STORAGE_URI on Redis and Redis gone, every request went through
    Flask-Limiter's failed call to it: /healthz, discovery and every page answered 500 with a
    traceback in the log. Each worker now counts in its own memory until Redis is back."""
    from identity.extensions import limiter

    proxy, storage_uri = redis_fault
    app = create_app(make_config(database_uri, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=storage_uri,
                                 RATELIMIT_SENSITIVE="3 per minute", PROPAGATE_EXCEPTIONS=False))
    app.test_client_class = HttpsClient
    try:
        with app.app_context():
            limiter.reset()  # this test's counts only
        client = app.test_client()
        assert client.get("/healthz").status_code == 200

        proxy.stop()

        for path in ("/healthz", "/.well-known/openid-configuration", "/account/login"):
            response = answered(path, client.get, path)
            assert response.status_code == 200, f"{path}: {response.status_code}"
        statuses = [answered("sign-in", AuthActions(client).login, password="wrong-password-entirely").status_code
                    for _ in range(4)]
        assert statuses == [400, 400, 400, 429], statuses
    finally:
        proxy.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def hung_store():
    """A store that accepts connections and never answers (a Redis stuck in a long command, a
    half-open firewall): the URI of a listener that reads nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_a_hung_rate_limits_store_costs_a_request_its_timeout_not_seconds(database_uri, hung_store, _migrated):
    """A Redis that accepts and never answers held a request for redis-py's defaults (no socket
    timeout: 5 s and more per request that checked the store, /healthz included, a sync worker
    blocked for all of it). The store now has RATELIMIT_STORAGE_TIMEOUT_SECONDS on connecting
    and on reading, after which the in-memory fallback counts, as when Redis is down."""
    from identity.extensions import limiter

    app = create_app(make_config(database_uri, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=hung_store,
                                 RATELIMIT_STORAGE_TIMEOUT_SECONDS=0.2, PROPAGATE_EXCEPTIONS=False))
    app.test_client_class = HttpsClient
    try:
        with app.app_context():
            pool_settings = limiter.storage.storage.connection_pool.connection_kwargs
        assert (pool_settings.get("socket_timeout"), pool_settings.get("socket_connect_timeout")) == (0.2, 0.2)
        client = app.test_client()
        for path in ("/healthz", "/.well-known/openid-configuration", "/account/login"):
            response = answered(path, client.get, path)
            assert response.status_code == 200, f"{path}: {response.status_code}"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
