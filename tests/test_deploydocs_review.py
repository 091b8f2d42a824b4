"""docs/deployment.md and docs/configuration.md read as a contract: each test holds the code to one
of their sentences (the review of rev19, deployment and configuration docs)."""

import pytest
from cryptography.fernet import Fernet

from app import create_app
from identity.config.startup import ConfigurationError

KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()


def make(instance, **config):
    """create_app in production with what it requires, no schema check (as tests/test_config.py's make)."""
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"), "SECRET_KEY": "k" * 32,
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": "https://id.example.test", "MAIL_SERVER": "smtp.example.test"}
    return create_app({**base, **config})


@pytest.mark.database_independent
@pytest.mark.parametrize("issuer", ["https://id.example.com:99999", "https://id.example.com:http",
                                    "https://id.example.com:-1"])
def test_an_issuer_whose_port_is_not_a_port_is_refused_at_start(instance, issuer):
    # configuration.md: ISSUER must be "an URL that parses", else the server stops at start with one
    # line naming the setting; a port past 65535 made every passkey page fail (browser_origin)
    with pytest.raises(ConfigurationError, match="ISSUER"):
        make(instance, ISSUER=issuer)


@pytest.mark.database_independent
def test_sqlite_keeps_its_30_second_busy_timeout_when_other_connect_args_are_set(instance):
    # configuration/deployment.md: SQLite waits for a lock at most its busy timeout (connect_args.timeout
    # or the URI's ?timeout=, 30 s); another connect_args option must not bring back sqlite3's 5 s
    from sqlalchemy import text

    from identity.extensions import db

    app = make(instance, SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "connect_args": {"cached_statements": 64}})
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


@pytest.mark.server
@pytest.mark.database_independent
def test_a_gunicorn_bind_with_no_address_stops_gunicorn_in_one_line(tmp_path):
    # deployment.md: GUNICORN_BIND is comma-separated addresses, else PORT; one naming none (",")
    # listened nowhere and its workers failed in a loop (IndexError) for as long as it ran
    from config_review_support import start_with
    from servers import migrate, server_env

    uri = "sqlite:///" + str(tmp_path / "db.sqlite")
    migrate(server_env(uri))  # a current schema: nothing else stops the workers
    code, output = start_with("gunicorn", uri, {"GUNICORN_BIND": " , "}, wait=8)
    assert code not in (None, 0), f"gunicorn still running with no address: {output[-600:]}"
    assert "GUNICORN_BIND" in output and "Traceback" not in output, output[-1500:]


PG_URI = "postgresql+psycopg://identity:identity@127.0.0.1:5432/unused"


@pytest.mark.database_independent
@pytest.mark.parametrize("uri, connect_args", [
    ("sqlite", {"timeout": "30"}),  # a quoted number: every connection failed (TypeError)
    ("sqlite", {"prepare_threshold": None}),  # the PgBouncer advice applied to SQLite
    ("sqlite", {"isolation_level": "SERIALIZABLE"}),
    (PG_URI, {"prepare_treshold": None}),  # deployment.md's PgBouncer advice, misspelt
    (PG_URI, {"sslmod": "require"}),  # refused in the URI's query already (configuration.md)
    (PG_URI, []),
])
def test_connect_args_the_driver_cannot_take_are_refused_at_start(instance, uri, connect_args):
    # configuration.md: SQLALCHEMY_ENGINE_OPTIONS options the database cannot take are refused at start in one
    # line naming the setting; these started a server that logged "database unreachable" and answered 503
    # (discovery 500) for good, an outage to wait out, where the same option in the URI's query is refused
    uri = "sqlite:///" + str(instance / "test.db") if uri == "sqlite" else uri
    with pytest.raises(ConfigurationError, match="SQLALCHEMY_ENGINE_OPTIONS"):
        make(instance, SQLALCHEMY_DATABASE_URI=uri, SQLALCHEMY_ENGINE_OPTIONS={"connect_args": connect_args})


@pytest.mark.database_independent
@pytest.mark.parametrize("uri, connect_args", [
    ("sqlite", {"timeout": 5, "check_same_thread": False, "cached_statements": 64}),
    (PG_URI, {"prepare_threshold": None}),  # deployment.md, behind PgBouncer
    (PG_URI, {"sslmode": "require", "connect_timeout": 3, "options": "-c search_path=identity", "autocommit": False}),
])
def test_connect_args_the_driver_takes_are_accepted(instance, uri, connect_args):
    uri = "sqlite:///" + str(instance / "test.db") if uri == "sqlite" else uri
    app = make(instance, SQLALCHEMY_DATABASE_URI=uri, SQLALCHEMY_ENGINE_OPTIONS={"connect_args": connect_args})
    assert set(connect_args) <= set(app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"])


@pytest.mark.database_independent
def test_a_redis_store_named_in_capitals_gets_the_storage_timeout_too(instance, caplog):
    # configuration.md: RATELIMIT_STORAGE_TIMEOUT_SECONDS bounds every wait on Redis (0.5 s); a URI's
    # scheme is case-insensitive (RFC 3986 3.1), and Flask-Limiter and redis-py took REDIS://, but
    # without the timeout a Redis that never answers held every request without end
    from identity.extensions import limiter

    app = make(instance, RATELIMIT_STORAGE_URI="REDIS://127.0.0.1:6379/14")
    with app.app_context():
        pool = limiter._storage.storage.connection_pool
    assert pool.connection_kwargs.get("socket_timeout") == 0.5, pool.connection_kwargs
    # and a production server counting in memory warns, however memory:// is written
    caplog.clear()
    make(instance, RATELIMIT_STORAGE_URI="MEMORY://")
    assert any("counted in this worker's memory" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.database_independent
@pytest.mark.parametrize("options", [{"pool_recycle": "1h"}, {"pool_timeout": "30s"}, {"poolclass": "NullPool"}])
def test_an_engine_option_of_a_wrong_kind_is_one_line_at_start_not_a_traceback(instance, options):
    # configuration.md: a wrong SQLALCHEMY_ENGINE_OPTIONS stops the server and every command at start
    # with one line naming the setting; these stopped them with create_engine's ValueError or AttributeError
    with pytest.raises(ConfigurationError, match="SQLALCHEMY_ENGINE_OPTIONS"):
        make(instance, SQLALCHEMY_ENGINE_OPTIONS=options)


@pytest.mark.database_independent
@pytest.mark.parametrize("uri, level", [("sqlite", "READ COMMITED"), ("sqlite", "READ COMMITTED"), (PG_URI, "READ COMMITED"),
                                        (PG_URI, 2)])
def test_an_isolation_level_the_database_has_not_is_refused_at_start(instance, uri, level):
    # configuration.md: a wrong SQLALCHEMY_ENGINE_OPTIONS is one line at start; a misspelt isolation_level
    # made every command a traceback (ArgumentError at the first connection) and a server that logged
    # "database unreachable: ArgumentError" and answered 503 for good
    uri = "sqlite:///" + str(instance / "test.db") if uri == "sqlite" else uri
    with pytest.raises(ConfigurationError, match="isolation_level"):
        make(instance, SQLALCHEMY_DATABASE_URI=uri, SQLALCHEMY_ENGINE_OPTIONS={"isolation_level": level})


@pytest.mark.database_independent
@pytest.mark.parametrize("uri, level", [("sqlite", "SERIALIZABLE"), (PG_URI, "read_committed"), (PG_URI, "REPEATABLE READ")])
def test_an_isolation_level_the_database_has_is_accepted(instance, uri, level):
    uri = "sqlite:///" + str(instance / "test.db") if uri == "sqlite" else uri
    app = make(instance, SQLALCHEMY_DATABASE_URI=uri, SQLALCHEMY_ENGINE_OPTIONS={"isolation_level": level})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["isolation_level"] == level


@pytest.mark.database_independent
@pytest.mark.parametrize("issuer", ["https://id.example.com?", "https://id.example.com/identity/?"])
def test_an_issuer_with_an_empty_query_is_refused_at_start(instance, issuer):
    # configuration.md / checks.py: ISSUER has no query (OpenID Connect Discovery 3); an empty one ("?",
    # a copy-paste's leftover) passed, and discovery named https://id.example.com?/connect/token
    with pytest.raises(ConfigurationError, match="ISSUER"):
        make(instance, ISSUER=issuer)
