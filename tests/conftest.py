"""Fixtures: a real database (SQLite file, or PostgreSQL via FLASK_SQLALCHEMY_DATABASE_URI),
migrated once per session and emptied after each test; `app`, `client`, `runner`, `seeded`,
`live_server`; and small action helpers. Under pytest-xdist each worker gets its own databases
and the `serial` tests run alone (tests/workers.py)."""

import json
import os
import re
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from app import create_app
from identity.config import defaults as identity_config
from identity.services.schema import ensure_schema
from identity.extensions import db
from identity.services import mail as mail_service
import mail_server
from mail_server import mail  # noqa: F401  (the fixture: a real SMTP server's inbox)
from workers import SerialLock, isolate, worker_name

ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = ROOT / "demo" / "seed.json"
ALICE_PASSWORD = "tulip-quartz-harbor-917"
KEEP_TABLES = {"alembic_version"}

# Measurements that other tests running at the same time would distort: marked `serial` here (one
# list, rather than a line in each module) and run alone under pytest-xdist.
SERIAL = (
    # Argon2's work area trimmed after a pause, and the trim thread's wake-ups, timed; the file's
    # other tests (the modules a process imports, the libraries it maps) no load changes
    "test_memory_footprint.py::test_memory_is_trimmed_once_hashing_pauses",
    "test_memory_footprint.py::test_a_hash_does_not_wake_the_trim_thread",
    "test_memory_footprint.py::test_an_idle_process_gives_argon2s_memory_back",
)


def pytest_configure(config):
    """In an xdist worker, before any test module reads the environment: databases of its own."""
    worker = worker_name()
    if worker:
        isolate(worker)


# The files that take longest (a CI run's JUnit times, 2026-12-07), handed out first, longest
# first (the Makefile passes --no-loadscope-reorder): each file runs whole on one process, and
# pytest-xdist's own order (by number of tests) left long files of few tests to the end of the
# run, where one process worked through them while the others idled.
LONGEST_FIRST = (
    "test_twice_review.py", "test_fuzz_endpoints.py", "test_docs.py", "test_production_server.py",
    "test_longevity_review.py", "test_bearer_cache.py", "test_factors_review.py", "test_sqlite_review.py",
    "test_cli_production.py", "browser/test_authorize.py", "test_forms_review.py", "test_protocol_review.py",
    "browser/test_sign_in.py", "test_clientauth_review.py", "test_container_review.py", "test_scanners_review.py",
    "test_refresh_rotation_workers.py", "test_faults.py", "test_localapi.py", "test_backchannel_logout.py",
    "test_mfa_password.py", "test_hardening.py", "browser/test_protections.py", "test_localapi_password.py",
    "browser/test_a11y_review.py", "test_cli_operators.py", "test_authorize.py", "test_protocol_inputs.py",
    "test_sessions_workers.py",
)


def _started_at(item) -> int:
    """The place of the item's file in LONGEST_FIRST (the rest after, in their own order)."""
    name = item.path.name if item.path.parent.name != "browser" else f"browser/{item.path.name}"
    return _RANKS.get(name, len(_RANKS))


_RANKS = {name: rank for rank, name in enumerate(LONGEST_FIRST)}


# tests/test_bench.py's short run (wrk and several servers at full load), made by the module-scoped
# `short_run` fixture in the setup of the first test that reads it; the file's other tests start a
# server for a second or two and measure nothing
SERIAL_FIXTURES = {"short_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        if any(f"/{name}::" in f"/{item.nodeid}" or item.nodeid.endswith(f"/{name}") for name in SERIAL) \
                or SERIAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.serial)
    items.sort(key=_started_at)  # stable: a file's tests stay together, in their order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around setup, call and teardown (module-scoped servers included): alone if `serial`."""
    if not worker_name():
        return (yield)
    # the controller's tmp directory, which the workers of this run share (each has basetemp/gwN)
    lock = SerialLock(item.config._tmp_path_factory.getbasetemp().parent)
    with lock.held(alone=item.get_closest_marker("serial") is not None):
        return (yield)


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory):
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if uri:
        return uri
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "identity.db")


# Argon2 at a cost that still hashes for real but in well under a millisecond: the `seeded`
# fixture alone hashes several passwords and secrets for most tests. Tests of the production
# parameters pass PRODUCTION_ARGON2 (test_seed.py); servers and CLI subprocesses use the defaults.
CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1}
PRODUCTION_ARGON2 = {key: getattr(identity_config, key) for key in CHEAP_ARGON2}


def make_config(database_uri, **overrides):
    config = {
        **CHEAP_ARGON2,
        "TESTING": True,
        "ENVIRONMENT": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "RATELIMIT_ENABLED": False,
        "SESSION_COOKIE_SECURE": True,
        "SIGNING_KEY_RELOAD_SECONDS": 0,  # with the two below: no worker cache hides a change between requests
        "CORS_ORIGINS_CACHE_SECONDS": 0,
        "DISCOVERY_DOCUMENT_CACHE_SECONDS": 0,
        "CLIENT_CACHE_SECONDS": 0,  # tests change clients between requests
        "LOG_REQUESTS": False,  # tests read logs through caplog
        "BACKCHANNEL_LOGOUT_POLL_SECONDS": 0,  # no logout deliverer thread unless a test asks for one
        **mail_server.settings(),  # mail goes to the test SMTP server (tests/mail_server.py)
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def _migrated(database_uri):
    app = create_app(make_config(database_uri))
    with app.app_context():
        ensure_schema()
        db.engine.dispose()
    return True


def empty_database(app):
    with app.app_context():
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name not in KEEP_TABLES]
        with db.engine.begin() as conn:
            # DELETE, not TRUNCATE: on PostgreSQL a TRUNCATE makes and syncs new files for every
            # table, which costs far more than deleting the few rows a test leaves
            for table in tables:
                conn.execute(table.delete())
        ensure_schema()
        db.session.remove()


def seeded_database(database_uri: str, seed: dict) -> str:
    """The database emptied and seeded with `seed` (the seed file's dict), for servers started on
    it in other processes; this process keeps no connection to it."""
    from identity.services.seed import apply_seed, load_seed

    app = create_app(make_config(database_uri))
    empty_database(app)
    with app.app_context():
        apply_seed(load_seed(json.dumps(seed)))
        db.session.remove()
        db.engine.dispose()
    return database_uri


@pytest.fixture
def app_config():
    """Override settings for one test: `@pytest.mark.parametrize('app_config', [{...}])` or a fixture."""
    return {}


@pytest.fixture
def app(_migrated, database_uri, app_config):
    app = create_app(make_config(database_uri, **app_config))
    empty_database(app)
    yield app
    with app.app_context():
        mail_service.wait_until_sent()  # no mail of this test's may be sent (and audited) into the next
    mail_service.stop_sender(app)  # its thread would poll for the rest of the session, one per test's app
    close_connections(app)


@pytest.fixture(autouse=True)
def _mail_senders_stopped():
    """After each test, end the mail sender thread of every app it made, the `app` fixture's
    and its own (create_app in the test, a second worker, a server's): each would poll its queue
    for the rest of the process, and a hundred of them slowed a test that switches threads a
    thousandfold."""
    yield
    mail_service.stop_senders()


def close_connections(app) -> None:
    """Close every database connection of an app: its session's, its engine's pool and its
    autocommit connection (store/connection.py), so no backend of it outlives the test."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        if "identity_autocommit" in app.extensions:
            app.extensions["identity_autocommit"].close()


class HttpsClient(FlaskClient):
    """A test client that speaks https://localhost, so Secure cookies flow as in production."""

    def open(self, *args, **kwargs):
        if not (args and not isinstance(args[0], str)):
            kwargs.setdefault("base_url", "https://localhost")
            headers = kwargs.setdefault("headers", {})
            if isinstance(headers, dict):
                headers.setdefault("Referer", "https://localhost/")  # Flask-WTF's HTTPS referrer check
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = HttpsClient
    return app.test_client()


def postgresql_only() -> list:
    """A module's `pytestmark` when it runs on the suite's PostgreSQL alone (marked `postgres`;
    skipped on SQLite)."""
    return [pytest.mark.postgres,
            pytest.mark.skipif(not os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "").startswith("postgresql"),
                               reason="needs PostgreSQL: set FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://... "
                                      "(.ci/run does)")]


@pytest.fixture
def own_sqlite_app(tmp_path):
    """An app on its own fresh SQLite file, migrated: safe to damage (its schema moved, its file
    broken) whatever database the suite runs on."""
    app = create_app(make_config("sqlite:///" + str(tmp_path / "own.db")))
    with app.app_context():
        ensure_schema()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def seeded(app):
    """The demo seed (alice, mobile, spa, service, IdentityServerApi)."""
    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(DEMO_SEED.read_text()))
    return json.loads(DEMO_SEED.read_text())


class LiveServer:
    def __init__(self, app):
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def live_server(app):
    """The app served over real HTTP on a free loopback port (in a thread)."""
    app.config["SESSION_COOKIE_SECURE"] = False
    app.config["REMEMBER_COOKIE_SECURE"] = False
    server = LiveServer(app).start()
    yield server
    server.stop()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(html: str) -> str:
    """Pull the CSRF token out of a rendered form."""
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1) or match.group(2)


FLOW_CLIENTS = {
    "api_scopes": [],
    "clients": [
        {"client_id": "web", "client_name": "Web App", "client_secrets": ["web-secret-0123456789"],
         "allowed_grant_types": ["authorization_code"], "redirect_uris": ["https://web.example.com/cb"],
         "post_logout_redirect_uris": ["https://web.example.com/bye"], "require_pkce": False,
         "allowed_scopes": ["openid", "profile", "email", "IdentityServerApi"], "allow_offline_access": True,
         "allowed_cors_origins": ["https://web.example.com"], "access_token_lifetime": 600},
        {"client_id": "native", "client_name": "Native App", "allowed_grant_types": ["authorization_code"],
         "redirect_uris": ["http://127.0.0.1/callback", "com.example.native:/cb"],
         "allowed_scopes": ["openid", "profile", "IdentityServerApi"], "allow_offline_access": True},
        {"client_id": "implicit", "client_name": "Implicit App", "allowed_grant_types": ["implicit"],
         "redirect_uris": ["https://implicit.example.com/cb"], "allow_access_tokens_via_browser": True,
         "allowed_scopes": ["openid", "profile", "email"]},
        {"client_id": "legacy", "client_name": "Legacy App", "client_secrets": ["legacy-secret-0123456789"],
         "allowed_grant_types": ["password"], "allowed_scopes": ["openid", "profile", "IdentityServerApi"],
         "allow_offline_access": True},
    ],
    "users": [
        {"username": "bob", "email": "bob@example.com", "password": "marble-violet-canyon-482", "name": "Bob Example"},
    ],
}
FLOW_SECRETS = {"web": "web-secret-0123456789", "legacy": "legacy-secret-0123456789"}
BOB_PASSWORD = "marble-violet-canyon-482"


@pytest.fixture
def flow_clients(seeded, app):
    """The demo seed plus clients for every flow (web, native, implicit, legacy) and a second user, bob."""
    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(json.dumps(FLOW_CLIENTS)))
    return FLOW_CLIENTS


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """A private instance/ folder, and an environment without FLASK_* settings."""
    folder = tmp_path / "instance"
    folder.mkdir()
    # create_app() uses Flask's own instance folder (next to app.py); point it here instead
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(folder))
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)
    return folder
