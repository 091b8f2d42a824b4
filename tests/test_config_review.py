"""Review from outside: every setting at its limits (defaults, types, bounds, combinations, the servers' own).

Each test is a setting (or a pair of them) at a value the server took at start and then failed on,
served wrongly or hung with; it must now be refused at start in one line naming the setting, or work.
"""

import pytest
from cryptography.fernet import Fernet

from app import create_app
from identity.config.startup import ConfigurationError
from mfa_actions import step_clock  # noqa: F401  (a fixture)

KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()


def make(instance, **config):
    """create_app in production with what it requires (as tests/test_config.py's make)."""
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": "https://id.example.test",
            "MAIL_SERVER": "smtp.example.test", "SECRET_KEY": "k" * 32}
    return create_app({**base, **config})


def refusal(instance, **config) -> str:
    """The one line create_app refuses `config` with."""
    with pytest.raises(ConfigurationError) as err:
        make(instance, **config)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- Argon2's costs together ---------------------------------------------------------------------


@pytest.mark.parametrize("costs, named", [
    ({"ARGON2_PARALLELISM": 4, "ARGON2_MEMORY_COST_KIB": 16}, "ARGON2_MEMORY_COST_KIB"),  # < 8 x lanes
    ({"ARGON2_MEMORY_COST_KIB": 2 ** 32}, "ARGON2_MEMORY_COST_KIB"),  # a 32-bit count of KiB
    ({"ARGON2_TIME_COST": 2 ** 32}, "ARGON2_TIME_COST"),
    ({"ARGON2_PARALLELISM": 2 ** 24, "ARGON2_MEMORY_COST_KIB": 2 ** 28}, "ARGON2_PARALLELISM"),  # 24-bit lanes
])
def test_argon2_costs_argon2_cannot_hash_with_are_refused_at_start(instance, costs, named):
    """Each cost was checked alone against Argon2's least value, but Argon2 also wants at least
    8 KiB per lane and 32-bit counts (24-bit lanes): ARGON2_PARALLELISM=4 with the documented least
    memory of 8 KiB started, then every hash failed (HashingError: Memory cost is too small), so
    `flask seed` and every sign-in (a rehash, or an unknown user's equal-time hash) were a 500."""
    assert named in refusal(instance, **costs)


def test_argon2_costs_at_their_limits_are_taken(instance):
    app = make(instance, ARGON2_PARALLELISM=4, ARGON2_MEMORY_COST_KIB=32, ARGON2_TIME_COST=1)
    assert app.config["ARGON2_MEMORY_COST_KIB"] == 32


# --- mail ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_a_mail_timeout_of_zero_is_refused_at_start(instance, monkeypatch, value):
    """MAIL_TIMEOUT_SECONDS took 0 (its least value was 0), and smtplib refuses a timeout of 0
    (ValueError: Non-blocking socket (timeout=0) is not supported): every reset link, verification
    link and notice failed (audited mail_failed) on a server that had started without a word."""
    monkeypatch.setenv("FLASK_MAIL_TIMEOUT_SECONDS", value)
    assert "MAIL_TIMEOUT_SECONDS" in refusal(instance)


def test_a_short_mail_timeout_still_sends(app, mail):
    from identity.services import mail as mail_service

    app.config["MAIL_TIMEOUT_SECONDS"] = 0.5
    with app.test_request_context("/", base_url="https://id.example.com"):
        assert mail_service.send("alice@example.com", "password_reset", link="x", name="Alice", username="alice",
                                 lifetime="30 minutes") is True
    assert mail.wait_for(to="alice@example.com")


# --- the servers' own settings ---------------------------------------------------------------------


@pytest.mark.server
def test_gunicorn_with_no_workers_refuses_to_start(tmp_path):
    """WEB_CONCURRENCY=0: gunicorn took it (its own check refuses only a negative number), listened
    on its port and started no worker: every connection was accepted and never answered."""
    from config_review_support import start_with

    code, output = start_with("gunicorn", "sqlite:///" + str(tmp_path / "db.sqlite"), {"WEB_CONCURRENCY": "0"})
    assert code is not None, f"gunicorn still running with no worker:\n{output[-800:]}"
    assert code != 0 and "WEB_CONCURRENCY" in output, output
    assert "Traceback" not in output, output


@pytest.mark.server
@pytest.mark.parametrize("kind, name, value", [
    ("gunicorn", "PORT", "8000x"), ("gunicorn", "PORT", "70000"), ("gunicorn", "GUNICORN_TIMEOUT", "30s"),
    ("gunicorn", "GUNICORN_MAX_REQUESTS", "1e5"), ("granian", "PORT", "70000"),
])
def test_a_bad_server_variable_stops_the_server_in_one_line(tmp_path, kind, name, value):
    """gunicorn.conf.py read PORT and GUNICORN_* with int(): a value that was not a whole number
    stopped gunicorn with a traceback from the config file, and a port past 65535 with
    gunicorn's (OverflowError: bind(): port must be 0-65535), or granian's from Rust."""
    from config_review_support import start_with

    code, output = start_with(kind, "sqlite:///" + str(tmp_path / "db.sqlite"), {name: value})
    assert code not in (None, 0), output
    assert "Traceback" not in output and name in output, output[-1500:]


# --- durations too long for a date ---------------------------------------------------------------------


def test_session_lifetimes_past_any_date_are_refused_at_start(instance):
    """A "keep me signed in" cookie expires at the session's absolute end: 3 x 10^11 s (9,500 years)
    each started, and every sign-in with "keep me signed in" was a 500 (OverflowError: date value
    out of range, setting the cookie past the year 9999); 10^14 s stopped the start with a traceback
    (OverflowError in timedelta)."""
    lifetimes = {"SESSION_ABSOLUTE_SECONDS": 3 * 10 ** 11, "SESSION_IDLE_SECONDS": 3 * 10 ** 11,
                 "REMEMBER_COOKIE_DURATION_SECONDS": 3 * 10 ** 11}
    assert "SESSION_" in refusal(instance, **lifetimes)
    assert "REMEMBER_COOKIE_DURATION_SECONDS" in refusal(instance, REMEMBER_COOKIE_DURATION_SECONDS=10 ** 14)
    assert "SESSION_ABSOLUTE_SECONDS" in refusal(instance, SESSION_ABSOLUTE_SECONDS=10 ** 14)


@pytest.mark.parametrize("app_config", [{"SESSION_ABSOLUTE_SECONDS": 10 * 365 * 24 * 3600,
                                         "SESSION_IDLE_SECONDS": 10 * 365 * 24 * 3600,
                                         "REMEMBER_COOKIE_DURATION_SECONDS": 10 * 365 * 24 * 3600}])
def test_ten_year_sessions_still_sign_in_and_remember(client, seeded, app_config):
    from actions import AuthActions

    response = AuthActions(client).login(remember=True)
    assert response.status_code in (302, 303), response.status_code
    assert "idsrv.remember=" in " ".join(response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("settings, named", [
    ({"MFA_PENDING_SECONDS": 3 * 10 ** 9}, "MFA_PENDING_SECONDS"),
    ({"SIGNING_KEY_PROPAGATION_SECONDS": 3 * 10 ** 9, "SIGNING_KEY_ROTATION_SECONDS": 4 * 10 ** 9},
     "SIGNING_KEY_PROPAGATION_SECONDS"),
])
def test_more_durations_stored_as_32_bit_times_are_bounded_at_start(instance, settings, named):
    """Two more durations are added to the time and stored in a 32-bit column (until e7a2c9d4b6f1), and were not among
    the bounded ones: on PostgreSQL, MFA_PENDING_SECONDS=3e9 made every second step of a sign-in a
    503 (the spent sign-in's id is kept that long: integer out of range), and a propagation time
    of 3e9 made `flask keys rotate` fail (Error: database error: integer out of range)."""
    assert named in refusal(instance, **settings)


@pytest.mark.parametrize("app_config", [{"MFA_PENDING_SECONDS": 10 * 365 * 24 * 3600}])
def test_a_ten_year_mfa_pending_time_still_signs_in(client, seeded, app, app_config, step_clock):
    from mfa_actions import enrol_user, sign_in_with_code

    secret, _ = enrol_user(app)
    response = sign_in_with_code(client, secret)
    assert response.status_code in (302, 303), response.status_code


# --- retention at its limits ------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"AUDIT_RETENTION_DAYS": 10 ** 15}, {"CODE_TOMBSTONE_SECONDS": 10 ** 19},
                                        {"LOGOUT_DELIVERY_RETENTION_SECONDS": 10 ** 19},
                                        {"PURGE_BATCH_SIZE": 10 ** 19}])
def test_a_retention_longer_than_a_64_bit_time_keeps_everything_and_the_purge_runs(app, runner, seeded, app_config):
    """AUDIT_RETENTION_DAYS, CODE_TOMBSTONE_SECONDS and LOGOUT_DELIVERY_RETENTION_SECONDS have no
    upper bound ("keep it for ever" is a fair wish), and PURGE_BATCH_SIZE none either; past 64 bits
    the purge's cut-off (or LIMIT) could not be bound on SQLite: `flask purge` stopped with a
    traceback (OverflowError: Python int too large to convert to SQLite INTEGER), and so did every
    automatic pass after a response, so nothing of any kind was ever purged."""
    from sqlalchemy import func, select

    from identity.extensions import db
    from identity.models import AuditEvent
    from identity.services import audit

    with app.app_context():
        audit.record("test_event")
        db.session.commit()
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, repr(result.exception)
    assert "Purged:" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "test_event")) == 1


# --- discovery's HTTP max-age --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2.5", "1e300"])
def test_a_discovery_max_age_that_is_not_whole_seconds_is_refused_at_start(instance, monkeypatch, value):
    """DISCOVERY_CACHE_SECONDS is the Cache-Control max-age of discovery and the JWKS, and took any
    number: 2.5 was served as `max-age=2.5` and 1e300 as `max-age=1e+300`, which are not
    delta-seconds (RFC 9111 1.2.2, 5.2.2.1: digits only); a cache reads such a max-age as invalid
    and the document as stale, so every relying party fetched the JWKS on each use."""
    monkeypatch.setenv("FLASK_DISCOVERY_CACHE_SECONDS", value)
    assert "DISCOVERY_CACHE_SECONDS" in refusal(instance)


def test_a_whole_discovery_max_age_is_served_as_delta_seconds(instance):
    app = make(instance, DISCOVERY_CACHE_SECONDS=120)
    app.test_client_class = None
    from identity.services.schema import ensure_schema

    with app.app_context():
        ensure_schema()
    response = app.test_client().get("/.well-known/openid-configuration/jwks", base_url="https://id.example.test")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=120"


# --- the product's name -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2026", "null", '""'])
def test_a_product_name_that_is_not_text_is_refused_at_start(instance, monkeypatch, value):
    """PRODUCT_NAME (the pages' title, the mails' sender name and subject, the authenticator app's
    and the passkey's issuer) was not checked: FLASK_PRODUCT_NAME=2026 is JSON, a number, and the
    server started; then every new password was a 500 (TypeError: normalize() argument 2 must be
    str, not int, in the password policy), `flask seed` failed with a traceback, and null left every
    mail without a sender (email.utils.quote(None))."""
    monkeypatch.setenv("FLASK_PRODUCT_NAME", value)
    message = refusal(instance)
    assert "PRODUCT_NAME" in message


def test_a_product_name_of_digits_quoted_as_json_is_taken(instance, monkeypatch):
    monkeypatch.setenv("FLASK_PRODUCT_NAME", '"2026"')
    assert make(instance).config["PRODUCT_NAME"] == "2026"


# --- the rate-limit store's options -------------------------------------------------------------------


def test_a_redis_option_redis_does_not_take_is_refused_at_start(instance, monkeypatch):
    """FLASK_RATELIMIT_STORAGE_OPTIONS='{"socket_timout": 1}' (a typo) started, and every request's
    connection to Redis failed (TypeError: unexpected keyword argument), logged only as "Rate limit
    storage unreachable - falling back to in-memory storage": each worker counted every limit alone
    for good, with Redis up and reachable."""
    monkeypatch.setenv("FLASK_RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/11")
    monkeypatch.setenv("FLASK_RATELIMIT_STORAGE_OPTIONS", '{"socket_timout": 1}')
    message = refusal(instance)
    assert "RATELIMIT_STORAGE_OPTIONS" in message and "socket_timout" in message


def test_redis_options_redis_takes_are_kept(instance, monkeypatch):
    monkeypatch.setenv("FLASK_RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/11")
    monkeypatch.setenv("FLASK_RATELIMIT_STORAGE_OPTIONS", '{"socket_timeout": 1, "health_check_interval": 30, "key_prefix": "x"}')
    app = make(instance)
    assert app.config["RATELIMIT_STORAGE_OPTIONS"]["socket_timeout"] == 1
    assert app.config["RATELIMIT_STORAGE_OPTIONS"]["socket_connect_timeout"] == 0.5


def test_a_redis_url_option_redis_cannot_read_is_refused_in_one_line(instance):
    """The same for the URL's own query (redis://host/0?socket_timeout=zz): a traceback from
    Flask-Limiter's start, not a line."""
    message = refusal(instance, RATELIMIT_STORAGE_URI="redis://:secret-pw@127.0.0.1:6379/11?socket_timeout=zz")
    assert "RATELIMIT_STORAGE_URI" in message and "secret-pw" not in message


# --- the database statement timeout ---------------------------------------------------------------


def test_a_statement_timeout_past_postgresqls_range_is_refused_at_start(instance):
    """DATABASE_STATEMENT_TIMEOUT_SECONDS becomes PostgreSQL's statement_timeout in milliseconds,
    at most 2^31 - 1 (24.8 days). 3,000,000 s (35 days, 'as good as none') started, and every
    connection was then refused by PostgreSQL (FATAL: invalid value for parameter
    "statement_timeout": "3000000000"): every request, /healthz included, failed."""
    assert "DATABASE_STATEMENT_TIMEOUT_SECONDS" in refusal(instance, DATABASE_STATEMENT_TIMEOUT_SECONDS=3_000_000)


@pytest.mark.parametrize("app_config", [{"DATABASE_STATEMENT_TIMEOUT_SECONDS": 2_147_483}])
def test_the_longest_statement_timeout_still_serves(client, seeded, app_config):
    from actions import AuthActions

    assert client.get("/healthz").status_code == 200
    assert AuthActions(client).login().status_code in (302, 303)


# --- cookies: SameSite=None needs Secure ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["SESSION", "REMEMBER"])
@pytest.mark.parametrize("settings", [{"SESSION_COOKIE_SECURE": False}, {"ENVIRONMENT": "development"}])
def test_samesite_none_without_secure_is_refused_at_start(instance, kind, settings):
    """SameSite=None on a cookie without Secure is ignored entirely by the browser (RFC 6265bis
    5.7, step 23; Chrome and Firefox do so): FLASK_SESSION_COOKIE_SAMESITE=None with
    FLASK_SESSION_COOKIE_SECURE=false, or in development where Secure is off, started a server
    whose session (or remember-me) cookie no browser kept: every sign-in came back to the login page."""
    message = refusal(instance, **{f"{kind}_COOKIE_SAMESITE": "None", **settings})
    assert f"{kind}_COOKIE_SAMESITE" in message and "SESSION_COOKIE_SECURE" in message


def test_samesite_none_with_secure_is_set_on_the_cookie(instance):
    app = make(instance, SESSION_COOKIE_SAMESITE="None")
    assert app.config["SESSION_COOKIE_SECURE"] is True


# --- password rules no password can meet --------------------------------------------------------------


def test_more_distinct_characters_than_the_longest_password_is_refused_at_start(instance):
    """PASSWORD_MIN_LENGTH above PASSWORD_MAX_LENGTH is refused; PASSWORD_MIN_DISTINCT_CHARACTERS
    above it was not: 200 distinct characters with passwords of at most 128 started a server on
    which no password could ever be set (registration, reset, change, seed all refused)."""
    message = refusal(instance, PASSWORD_MIN_DISTINCT_CHARACTERS=200)
    assert "PASSWORD_MIN_DISTINCT_CHARACTERS" in message and "PASSWORD_MAX_LENGTH" in message


@pytest.mark.parametrize("app_config", [{"PASSWORD_MIN_DISTINCT_CHARACTERS": 20, "PASSWORD_MIN_LENGTH": 20,
                                         "PASSWORD_MAX_LENGTH": 64}])
def test_as_many_distinct_characters_as_a_long_password_has_is_taken(app, app_config):
    assert app.config["PASSWORD_MIN_DISTINCT_CHARACTERS"] == 20


# --- the issuer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["https://id.example.test\n", "https://id.example.test ", " https://id.example.test",
                                   "https://id.example.test\t", "https://id.exa\nmple.test"])
def test_an_issuer_with_whitespace_is_refused_at_start(instance, monkeypatch, value):
    """urlsplit drops tabs and line breaks and strips leading blanks, so the check took
    FLASK_ISSUER='https://id.example.test\\n' (an env file or a mounted secret's trailing line
    break): discovery then said issuer 'https://id.example.test\\n' and token endpoint
    'https://id.example.test\\n/connect/token', every token's iss had it, and no relying party's
    issuer comparison (OpenID Connect Discovery 4.3) or endpoint call could work."""
    monkeypatch.setenv("FLASK_ISSUER", value)
    assert "ISSUER" in _issuer_refusal(instance)


def _issuer_refusal(instance) -> str:
    """The refusal with the issuer from the environment (make's own ISSUER left out)."""
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "MAIL_SERVER": "smtp.example.test", "SECRET_KEY": "k" * 32}
    with pytest.raises(ConfigurationError) as err:
        create_app(base)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("value", ["smtp.example.test\n", "smtp.example.test ", " smtp.example.test", "smtp example.test"])
def test_a_mail_server_with_whitespace_is_refused_at_start(instance, monkeypatch, value):
    """FLASK_MAIL_SERVER='smtp.example.test\\n' (an env file's trailing line break or space) was
    taken; every mail then failed to resolve the host (gaierror: Name or service not known),
    audited one by one while the pages said a link was on its way."""
    monkeypatch.setenv("FLASK_MAIL_SERVER", value)
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": "https://id.example.test", "SECRET_KEY": "k" * 32}
    with pytest.raises(ConfigurationError) as err:
        create_app(base)
    assert "MAIL_SERVER" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["SESSION", "REMEMBER"])
@pytest.mark.parametrize("name", ["__Host-idsrv", "__Secure-idsrv", "__host-idsrv"])
def test_a_secure_prefixed_cookie_name_without_secure_is_refused_at_start(instance, kind, name):
    """A cookie named __Secure-... or __Host-... without Secure is ignored by the browser (RFC 6265bis
    4.1.3, 5.7; the prefixes match case-insensitively): FLASK_SESSION_COOKIE_NAME=__Host-idsrv in
    development, or with FLASK_SESSION_COOKIE_SECURE=false, started a server no one could stay
    signed in to."""
    message = refusal(instance, ENVIRONMENT="development", **{f"{kind}_COOKIE_NAME": name})
    assert f"{kind}_COOKIE_NAME" in message


def test_a_host_prefixed_cookie_name_with_secure_is_taken(instance):
    assert make(instance, SESSION_COOKIE_NAME="__Host-idsrv").config["SESSION_COOKIE_NAME"] == "__Host-idsrv"


# --- the environment's name ----------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["testing", "staging", "Development", "prod"])
def test_an_environment_the_docs_do_not_name_is_refused_at_start(app, instance, capsys, environment):
    """FLASK_ENVIRONMENT is production or development; the code also relaxed everything for an
    undocumented "testing" (meant for the test suite): a staging server started with
    FLASK_ENVIRONMENT=testing took its issuer from each request's Host header (discovery said
    issuer https://evil.example when asked so), generated its own SECRET_KEY and key-encryption key,
    set cookies without Secure and wrote mails to instance/outbox/. Any other name quietly meant
    production."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    with pytest.raises(SystemExit) as stopped:
        make(instance, TESTING=False, ENVIRONMENT=environment, SQLALCHEMY_DATABASE_URI=uri, ISSUER=None, SECRET_KEY=None)
    assert stopped.value.code == 3
    assert "ENVIRONMENT must be production or development" in capsys.readouterr().err


def test_the_test_suites_environment_is_taken_under_testing(instance):
    assert make(instance, ENVIRONMENT="testing").config["SESSION_COOKIE_SECURE"] is False
