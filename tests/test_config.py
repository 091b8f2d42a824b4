"""Settings: defaults < instance/config.py < FLASK_* environment < the dict given to create_app."""

import os
import stat

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from identity.config.startup import ConfigurationError


KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
PRODUCTION_ISSUER = "https://id.example.test"  # production requires one
PRODUCTION_MAIL_SERVER = "smtp.example.test"  # and a mail server (nothing is mailed in these tests)


def make(instance, **config):
    """create_app with what every test needs: no schema check, a database in the instance folder,
    a key-encryption key, an issuer and a mail server (required in production; tests/test_key_rotation.py,
    tests/test_issuer_production.py and tests/test_recovery_settings.py check that)."""
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": PRODUCTION_ISSUER, "MAIL_SERVER": PRODUCTION_MAIL_SERVER}
    return create_app({**base, **config})


def test_each_layer_overrides_the_one_before(instance, monkeypatch):
    (instance / "config.py").write_text(
        "SECRET_KEY = 'from-instance-config-file-0123456789'\n"
        "LOCKOUT_SECONDS = 111\n"
        "LOCKOUT_MAX_FAILURES = 7\n"
        "ISSUER = 'https://instance.example'\n"
    )
    monkeypatch.setenv("FLASK_LOCKOUT_MAX_FAILURES", "8")
    monkeypatch.setenv("FLASK_ISSUER", "https://env.example")

    app = make(instance, ISSUER="https://dict.example")

    assert app.instance_path == str(instance)
    assert app.config["DISCOVERY_CACHE_SECONDS"] == 300  # default
    assert app.config["LOCKOUT_SECONDS"] == 111  # instance over default
    assert app.config["SECRET_KEY"] == "from-instance-config-file-0123456789"
    assert app.config["LOCKOUT_MAX_FAILURES"] == 8  # environment over instance
    assert app.config["ISSUER"] == "https://dict.example"  # dict over environment


def test_defaults_without_instance_config_or_environment(instance):
    app = make(instance, SECRET_KEY="k" * 32)

    assert app.config["ENVIRONMENT"] == "production"
    assert app.config["ISSUER"] == PRODUCTION_ISSUER  # required in production (the default is None)
    assert app.config["PASSWORD_MIN_LENGTH"] == 15
    assert app.config["LOCKOUT_MAX_FAILURES"] == 10
    assert app.config["LOCKOUT_SECONDS"] == 300
    assert app.config["TRUST_PROXY_HOPS"] == 0


def test_environment_values_are_parsed_as_json(instance, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "plain string, not JSON, long enough to sign")
    monkeypatch.setenv("FLASK_TRUST_PROXY_HOPS", "1")
    monkeypatch.setenv("FLASK_GRANT_TYPES_ENABLED", '["authorization_code", "refresh_token"]')
    monkeypatch.setenv("FLASK_RATELIMIT_ENABLED", "false")

    app = make(instance)

    assert app.config["SECRET_KEY"] == "plain string, not JSON, long enough to sign"
    assert app.config["TRUST_PROXY_HOPS"] == 1
    assert app.config["GRANT_TYPES_ENABLED"] == ["authorization_code", "refresh_token"]
    assert app.config["RATELIMIT_ENABLED"] is False


@pytest.mark.parametrize("setting, value", [("SECRET_KEY", "48213907561234987650123498765012"),
                                            ("MAIL_PASSWORD", "20481024"), ("MAIL_USERNAME", "1729"),
                                            ("MAIL_SERVER", "25")])
def test_a_text_setting_that_the_environment_turned_into_json_is_refused_at_start(instance, monkeypatch,
                                                                                 setting, value):
    """A value of digits (or true, null) arrives from FLASK_* as a number (or a bool, None): an
    all-digit FLASK_SECRET_KEY started a server whose every page was a 500 (TypeError: 'int' object
    is not iterable, in itsdangerous), and a numeric mail password fails inside smtplib's login.
    Refused at start naming the setting, and never echoing a value that may be a secret."""
    monkeypatch.setenv(f"FLASK_{setting}", value)
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
              "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": PRODUCTION_ISSUER,
              "MAIL_SERVER": PRODUCTION_MAIL_SERVER, "SECRET_KEY": "k" * 32}
    config.pop(setting, None)  # the environment's value, as JSON made it
    with pytest.raises(ConfigurationError, match=setting) as refused:
        create_app(config)
    assert value not in str(refused.value)


def test_default_database_is_sqlite_in_the_instance_folder(instance):
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 32, "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
                      "ISSUER": PRODUCTION_ISSUER, "MAIL_SERVER": PRODUCTION_MAIL_SERVER})

    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///" + str(instance / "identity.db")


@pytest.fixture
def umask_022():
    """The usual umask, under which a file made without an explicit mode is world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _modes(path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob(path.name + "*")}


@pytest.mark.parametrize("where", ["instance folder (default)", "a configured path"])
def test_a_new_sqlite_database_and_its_wal_files_are_private(instance, umask_022, where):
    from identity.services.schema import ensure_schema
    from identity.extensions import db

    path = instance / "identity.db" if where.startswith("instance") else instance / "data" / "other.db"
    config = {"TESTING": True, "SECRET_KEY": "k" * 32, "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": PRODUCTION_ISSUER, "MAIL_SERVER": PRODUCTION_MAIL_SERVER}
    if not where.startswith("instance"):
        path.parent.mkdir()
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(path)
    app = create_app(config)
    try:
        with app.app_context():
            ensure_schema()
            with db.engine.connect() as conn:  # WAL mode: -wal and -shm exist while a connection is open
                conn.exec_driver_sql("SELECT count(*) FROM users").scalar()
                modes = _modes(path)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    assert set(modes) == {path.name, path.name + "-wal", path.name + "-shm"}
    assert modes == dict.fromkeys(modes, 0o600)


# --- the secret key -----------------------------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key(instance):
    with pytest.raises(ConfigurationError, match="FLASK_SECRET_KEY"):
        make(instance)
    assert not (instance / "secret_key").exists()


def test_production_takes_the_secret_key_from_the_environment(instance, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "s" * 40)

    assert make(instance).config["SECRET_KEY"] == "s" * 40
    assert not (instance / "secret_key").exists()


@pytest.mark.parametrize("key", ["secret", "changeme", "k" * 31])
def test_production_refuses_a_short_secret_key(instance, monkeypatch, key):
    """The key signs the session and remember-me cookies: a short one can be guessed offline from
    any cookie, and then any session forged."""
    monkeypatch.setenv("FLASK_SECRET_KEY", key)
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be at least 32 characters"):
        make(instance)


def test_development_generates_a_secret_key_once_and_keeps_it(instance, caplog):
    first = make(instance, ENVIRONMENT="development")
    second = make(instance, ENVIRONMENT="development")

    key = first.config["SECRET_KEY"]
    assert len(key) >= 32
    assert second.config["SECRET_KEY"] == key
    stored = instance / "secret_key"
    assert stored.read_text().strip() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert sum("SECRET_KEY" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1


def test_development_keys_differ_between_instance_folders(tmp_path, monkeypatch):
    keys = []
    for name in ("one", "two"):
        folder = tmp_path / name
        monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self, folder=folder: str(folder))
        keys.append(make(folder, ENVIRONMENT="development").config["SECRET_KEY"])

    assert keys[0] != keys[1]


# --- cookies and other derived settings --------------------------------------------------------


@pytest.mark.parametrize("environment, secure", [("production", True), ("development", False)])
def test_cookie_secure_flag_follows_the_environment(instance, environment, secure):
    app = make(instance, ENVIRONMENT=environment, SECRET_KEY="k" * 32)

    assert app.config["SESSION_COOKIE_SECURE"] is secure
    assert app.config["REMEMBER_COOKIE_SECURE"] is secure
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_secure_cookie_in_a_response(instance):
    app = make(instance, SECRET_KEY="k" * 32)

    @app.get("/set-session")
    def set_session():
        from flask import session

        session["x"] = 1
        return "ok"

    cookie = app.test_client().get("/set-session", base_url="https://localhost").headers["Set-Cookie"]

    assert cookie.startswith("idsrv.session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize(
    "setting, value",
    [("PASSWORD_MAX_LENGTH", 32), ("PASSWORD_MAX_LENGTH", 1025), ("ACCESS_TOKEN_SIGNING_ALG", "HS256"), ("ID_TOKEN_SIGNING_ALG", "none"), ("ID_TOKEN_SIGNING_ALG", "ES256"),
     ("BEARER_CACHE_SECONDS", -1), ("BEARER_CACHE_SECONDS", 6), ("BEARER_CACHE_SECONDS", "0.5"),
     ("BEARER_CACHE_SECONDS", True)],
)
def test_unsafe_settings_are_refused_at_start(instance, setting, value):
    with pytest.raises(ConfigurationError, match=setting):
        make(instance, SECRET_KEY="k" * 32, **{setting: value})


@pytest.mark.parametrize(
    "setting, value",
    [("LOCKOUT_MAX_FAILURES", "10x"), ("LOCKOUT_MAX_FAILURES", 0), ("LOCKOUT_SECONDS", "5m"), ("LOCKOUT_SECONDS", -1),
     ("PASSWORD_MIN_LENGTH", "fifteen"), ("PASSWORD_MIN_LENGTH", 0), ("PASSWORD_MIN_LENGTH", 200),
     ("PASSWORD_MAX_LENGTH", "lots"), ("PASSWORD_MIN_DISTINCT_CHARACTERS", "five"),
     ("GRANT_TYPES_ENABLED", "authorization_code"), ("GRANT_TYPES_ENABLED", ["authorization_code", "device_code"]),
     ("TRUST_PROXY_HOPS", "one"), ("TRUST_PROXY_HOPS", -1), ("REMEMBER_COOKIE_DURATION_SECONDS", "2w"),
     ("ID_TOKEN_LIFETIME_SECONDS", "5m"), ("AUTHORIZATION_CODE_LIFETIME_SECONDS", 0),
     ("REFRESH_TOKEN_LIFETIME_SECONDS", "30d"), ("JWT_LEEWAY_SECONDS", "30s"), ("JWT_MAX_LENGTH", "8k"),
     ("SIGNING_KEY_RELOAD_SECONDS", "5s"), ("DISCOVERY_CACHE_SECONDS", "5m"), ("CLIENT_CACHE_SECONDS", "5s"),
     ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "30s"), ("LOG_REQUESTS_FLUSH_SECONDS", "1s"),
     ("MAX_CONTENT_LENGTH", "64k"), ("MAIL_PORT", "smtp"), ("MAIL_TIMEOUT_SECONDS", "10s"),
     ("ARGON2_TIME_COST", "2x"), ("ARGON2_MEMORY_COST_KIB", "19MiB"), ("ARGON2_PARALLELISM", 0),
     ("SQLALCHEMY_DATABASE_URI", "identity.db"), ("SQLALCHEMY_DATABASE_URI", "mysql://user:pw@db.example/identity")],
)
def test_a_wrong_setting_is_one_line_at_start_not_a_traceback_or_a_broken_server(instance, setting, value):
    """FLASK_* values that are not JSON arrive as strings (FLASK_LOCKOUT_MAX_FAILURES=10x): each is
    refused at start naming it, rather than a traceback there, or a server whose sign-ins fail."""
    with pytest.raises(ConfigurationError, match=setting):
        make(instance, SECRET_KEY="k" * 32, **{setting: value})


def _defaults(kind):
    from identity.config import defaults
    return sorted(name for name, value in vars(defaults).items() if name.isupper() and isinstance(value, kind))


#: every on/off setting of the defaults (bool), and SESSION_COOKIE_SECURE (None there: by environment)
SWITCH_SETTINGS = [name for name in _defaults(bool)] + ["SESSION_COOKIE_SECURE"]
#: every rate limit of the defaults: each RATELIMIT_* string but the storage's URI
RATE_LIMIT_SETTINGS = [name for name in _defaults(str) if name.startswith("RATELIMIT_") and name != "RATELIMIT_STORAGE_URI"]


#: every numeric setting of the defaults (int or float, not an on/off bool)
NUMERIC_SETTINGS = [name for name in _defaults((int, float)) if name not in SWITCH_SETTINGS]


@pytest.mark.parametrize("setting", NUMERIC_SETTINGS)
def test_every_numeric_setting_that_is_not_a_number_is_refused_at_start(instance, setting):
    """configuration.md: a numeric setting that is not a number stops the server and every command
    at start, naming it. FLASK_PASSWORD_MIN_GUESSES_LOG10=11x started a server whose every password
    check raised a TypeError (500), and FLASK_WTF_CSRF_TIME_LIMIT=1h one whose every form post did."""
    with pytest.raises(ConfigurationError, match=setting):
        make(instance, SECRET_KEY="k" * 32, **{setting: "12x"})


@pytest.mark.parametrize("setting", SWITCH_SETTINGS)
def test_a_switch_that_is_not_true_or_false_is_refused_at_start(instance, monkeypatch, setting):
    """FLASK_REGISTRATION_ENABLED=False is not JSON (JSON says false): it arrived as the string
    'False', which is true, and opened self-registration on a server whose operator turned it off."""
    monkeypatch.setenv(f"FLASK_{setting}", "False")
    with pytest.raises(ConfigurationError, match=f"{setting}.*true or false"):
        make(instance, SECRET_KEY="k" * 32)
    monkeypatch.setenv(f"FLASK_{setting}", "false")
    assert make(instance, SECRET_KEY="k" * 32).config[setting] is False


@pytest.mark.parametrize("setting", RATE_LIMIT_SETTINGS)
def test_a_rate_limit_that_does_not_parse_is_refused_at_start(instance, setting):
    """Flask-Limiter skips a limit it cannot parse, logging an error per request: RATELIMIT_SENSITIVE
    = "5 per fortnight" turned the sign-in limit off (the login page answered 400, never 429)."""
    with pytest.raises(ConfigurationError, match=setting):
        make(instance, SECRET_KEY="k" * 32, **{setting: "5 per fortnight"})


@pytest.mark.parametrize("uri", ["redis//localhost:6379/0", "foo://user:hunter2@cache.example", "redis://localhost:x/0",
                                 "memcached://localhost:11211", 6379])
def test_a_rate_limit_storage_that_cannot_be_used_is_refused_at_start(instance, uri):
    """cli.md: a wrong setting is one line naming it, never a traceback. A typo in
    FLASK_RATELIMIT_STORAGE_URI (a production step of deployment.md), a store whose package is not
    installed, or a number was Flask-Limiter's traceback at the start of the server and of every
    command. The line names the setting, not the URI (it may carry the store's password)."""
    with pytest.raises(ConfigurationError, match="RATELIMIT_STORAGE_URI") as refused:
        make(instance, SECRET_KEY="k" * 32, RATELIMIT_STORAGE_URI=uri)
    assert "hunter2" not in str(refused.value)


def test_a_redis_rate_limit_storage_is_accepted_without_connecting(instance):
    app = make(instance, SECRET_KEY="k" * 32, RATELIMIT_STORAGE_URI="redis://192.0.2.1:6379/0")
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://192.0.2.1:6379/0"


def test_a_redis_cluster_store_unreachable_at_start_is_one_line_not_a_traceback(instance):
    """cli.md: a setting that cannot be used is one line, never a traceback. redis-py's cluster
    client connects as it is built (the plain, TLS and Sentinel stores connect at their first
    count), so a cluster store that no node of answered at start (a cluster down, a wrong port)
    was RedisClusterUnreachableError's traceback at the start of the server and of every command.
    The line names the setting and the cause, never the URI's password."""
    from servers import free_port

    uri = f"redis+cluster://:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConfigurationError, match="RATELIMIT_STORAGE_URI") as refused:
        make(instance, SECRET_KEY="k" * 32, RATELIMIT_STORAGE_URI=uri)
    message = str(refused.value)
    assert "no node of the Redis Cluster answered" in message and "hunter2" not in message, message


def test_the_documented_rate_limit_forms_are_accepted(instance):
    app = make(instance, SECRET_KEY="k" * 32, RATELIMIT_SENSITIVE="10/minute", RATELIMIT_DEFAULT="10 per hour;5 per minute")
    assert app.config["RATELIMIT_SENSITIVE"] == "10/minute"


@pytest.mark.parametrize(
    "issuer", ["https://[::1", "id.example.com", "http://id.example.com", "https://id.example.com/?tenant=1",
               "https://id.example.com/#x", "ftp://id.example.com", "https://"],
)
def test_a_malformed_issuer_is_refused_at_start(instance, issuer):
    with pytest.raises(ConfigurationError, match="ISSUER"):
        make(instance, SECRET_KEY="k" * 32, ISSUER=issuer)


@pytest.mark.parametrize("environment, issuer", [("production", "https://id.example.com/tenant"),
                                                 ("development", "http://127.0.0.1:5000")])
def test_a_good_issuer_is_accepted(instance, environment, issuer):
    assert make(instance, SECRET_KEY="k" * 32, ENVIRONMENT=environment, ISSUER=issuer).config["ISSUER"] == issuer


# --- the schema check at start -----------------------------------------------------------------------


def test_server_refuses_an_out_of_date_schema_naming_the_command(instance, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make(instance, SECRET_KEY="k" * 32, TESTING=False)
    assert exit_info.value.code == 3  # gunicorn stops instead of respawning the worker
    assert "flask --app app db upgrade" in capsys.readouterr().err


def test_server_starts_on_a_current_schema(app, instance):
    started = make(instance, SECRET_KEY="k" * 32, TESTING=False, SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"])

    assert started.config["TESTING"] is False


def _limit_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "RATELIMIT_STORAGE_URI" in r.getMessage()]


def test_production_warns_that_in_memory_rate_limits_count_per_worker(instance, caplog):
    """memory:// counts in each worker process: with gunicorn's default 2 x cores + 1 workers an IP
    gets that many times every limit (sign-in, reset per account, registration per address). The
    docs said Redis was for several instances only, and nothing said otherwise at start."""
    make(instance, SECRET_KEY="k" * 32)
    assert _limit_warnings(caplog) and "redis://" in _limit_warnings(caplog)[0]
    caplog.clear()
    make(instance, SECRET_KEY="k" * 32, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0")
    make(instance, SECRET_KEY="k" * 32, RATELIMIT_ENABLED=False)  # limits kept at the proxy
    make(instance, ENVIRONMENT="development")
    assert _limit_warnings(caplog) == []


def test_a_long_secret_key_of_digits_is_refused_as_a_number_not_with_a_traceback(instance, monkeypatch):
    """FLASK_SECRET_KEY of digits is JSON: a number, which the length check must not meet first."""
    monkeypatch.setenv("FLASK_SECRET_KEY", "1" * 40)
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be text"):
        make(instance)


#: per-IP limits the defaults keep under 1,000 a minute, on purpose: sign-in and password change
#: (the contract's 100), and registration, which is off by default and mails any address given
#: (1,000 a minute from one address would make the server a relay for anyone's mail)
_PER_IP_AT_LEAST = {"RATELIMIT_SENSITIVE": 100, "RATELIMIT_REGISTRATION": 0}
#: limits not counted per client IP (per token, per account, per address, per signed-in user)
_NOT_PER_IP = {"RATELIMIT_PER_TOKEN", "RATELIMIT_PASSWORD_RESET_ACCOUNT", "RATELIMIT_REGISTRATION_ADDRESS",
               "RATELIMIT_EMAIL"}


def _per_minute(limit) -> float:
    """The most requests a limit lets through in any one minute."""
    window = limit.get_expiry()
    return limit.amount * 60 / window if window < 60 else limit.amount


def test_the_default_limits_per_ip_allow_what_carrier_nat_needs():
    """The contract: defaults allow at least 100 requests a minute per IP on sign-in and password
    change and at least 1,000 on the other endpoints, since mobile users share carrier NAT
    addresses. Forgot-password (10 an hour) and the strength meter (120 a minute) refused the
    eleventh person behind one address, whom the per-account limit already protects."""
    from limits import parse_many

    from identity.config import defaults
    from identity.config.checks import RATE_LIMITS

    too_low = {}
    for name in set(RATE_LIMITS) - _NOT_PER_IP:
        least = _PER_IP_AT_LEAST.get(name, 1000)
        allowed = min(_per_minute(limit) for limit in parse_many(getattr(defaults, name)))
        if allowed < least:
            too_low[name] = allowed
    assert too_low == {}


@pytest.mark.parametrize("sender", [
    "Pr\u00fcfdienst <pr\u00fcfung@example.com>",  # no SMTPUTF8: every mail failed (UnicodeEncodeError)
    ("Pr\u00fcfdienst", "pr\u00fcfung@example.com"),  # Flask-Mail's (name, address)
    "ID <no-reply@ex\u00adample.com>",  # a domain the IDNA conversion turns into another
])
def test_a_sender_no_mail_can_leave_from_is_refused_at_start(instance, sender):
    with pytest.raises(ConfigurationError, match="MAIL_DEFAULT_SENDER"):
        make(instance, SECRET_KEY="k" * 32, MAIL_DEFAULT_SENDER=sender)


@pytest.mark.parametrize("sender", ["Pr\u00fcfdienst <id@b\u00fccher.example>", ("Pr\u00fcfdienst", "id@example.com")])
def test_a_sender_with_an_accented_name_or_an_international_domain_is_accepted(instance, sender):
    assert make(instance, SECRET_KEY="k" * 32, MAIL_DEFAULT_SENDER=sender).config["MAIL_DEFAULT_SENDER"] == sender
