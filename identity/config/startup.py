"""Settings derived at start-up: the secret key, cookie flags, proxy trust; and what is required when.

Two kinds of requirement. `REQUIRED_TO_SERVE` lists the settings without which the server must
not serve (SECRET_KEY signs the cookies and CSRF tokens): they are checked when the app is built
to serve requests (gunicorn, `flask run`, any WSGI server), not when it is built for an operator's
command, which serves no page. A command that does need a setting says so with `require`
(identity.cli's `requires_settings`). Either way a missing or wrong setting is one line naming it:
`Error: ...` and exit 1 from the flask command, one line and exit 3 from a server (see
`refuse_to_start`), never a traceback.
"""

import ipaddress
import os
import secrets
import sys
import time
from datetime import timedelta
from urllib.parse import urlsplit

import click
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.middleware.proxy_fix import ProxyFix

from ..constants import ACCESS_TOKEN_LIFETIME_MAX, GRANT_TYPES


SIGNING_ALGS = ("RS256", "ES256")

#: Settings the server cannot serve without: name -> how to provide it (after "set FLASK_<name>").
REQUIRED_TO_SERVE: dict[str, str] = {
    "SECRET_KEY": "(or FLASK_ENVIRONMENT=development for a local demo)",
    "ISSUER": "to the public URL, e.g. https://id.example.com (or FLASK_ENVIRONMENT=development for a local demo)",
    "KEY_ENCRYPTION_KEY": "to a Fernet key (docs/signing-keys.md) or FLASK_ENVIRONMENT=development for a local demo",
    "MAIL_SERVER": "to the SMTP host that sends reset links and notices (or FLASK_ENVIRONMENT=development to write them to instance/outbox/)",
}
#: Of those, the ones development does without (the request's host as issuer; mails to instance/outbox/).
OPTIONAL_IN_DEVELOPMENT = ("ISSUER", "MAIL_SERVER")


class ConfigurationError(click.ClickException):
    """A setting that is missing or wrong; its message is one line naming the setting.

    A ClickException, so the flask command prints it as `Error: <message>` and exits 1.
    """


def serves_requests() -> bool:
    """Whether this process builds the app to serve requests, rather than for an operator's command.

    The flask command marks its process (FLASK_RUN_FROM_CLI); of its commands only `run` serves.
    The app is built while click resolves the command name, or inside `run` itself.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return True
    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.info_name == "run"


def require(app: Flask, *names: str) -> None:
    """Raise ConfigurationError naming the first of `names` that is not set."""
    for name in names:
        if app.config.get(name) in (None, ""):
            how = REQUIRED_TO_SERVE.get(name, "")
            raise ConfigurationError(f"{name} is required in production: set FLASK_{name}" + (f" {how}" if how else ""))


def refuse_to_start(app: Flask, err: ConfigurationError) -> None:
    """Stop on a bad setting in one line.

    Under the flask command (and in tests) the error is raised: click prints `Error: ...` and
    exits 1. In a server it is printed and the process exits 3, which gunicorn reads as "worker
    failed to boot" and stops instead of respawning (as the schema check does).
    """
    if app.config.get("TESTING") or os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        raise err
    print(f"{app.config['PRODUCT_NAME']}: {err}", file=sys.stderr)
    raise SystemExit(3)


def is_development(app: Flask) -> bool:
    return app.config["ENVIRONMENT"] in ("development", "testing")


def _development_secret_key(app: Flask) -> str:
    """Generate a key once and keep it in instance/, so restarts do not sign everyone out."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        app.logger.warning("generated a development SECRET_KEY in %s; set FLASK_SECRET_KEY in production", path)
    with open(path) as f:
        return f.read().strip()


def _development_key_encryption_key(app: Flask) -> str:
    """Like the development SECRET_KEY: one Fernet key in instance/ (0600), kept across restarts,
    so `make run` encrypts its signing keys with nothing set. Losing the file loses the keys."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "key_encryption_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode())
        app.logger.warning("generated a development KEY_ENCRYPTION_KEY in %s; set FLASK_KEY_ENCRYPTION_KEY in production", path)
    for _ in range(50):  # another process may have created the file and not yet written it
        with open(path) as f:
            key = f.read().strip()
        if key:
            return key
        time.sleep(0.02)
    raise ConfigurationError(f"{path} is empty: delete it to have a new development KEY_ENCRYPTION_KEY made")


def _key_encryption_keys(value) -> list[str]:
    """KEY_ENCRYPTION_KEY as a non-empty list of valid Fernet keys (one key, or a list: newest first)."""
    found = [value] if isinstance(value, str) else value
    if not isinstance(found, (list, tuple)) or not found:
        raise ConfigurationError("KEY_ENCRYPTION_KEY must be a Fernet key or a list of them, newest first")
    for key in found:
        try:
            Fernet(key)
        except (TypeError, ValueError):
            raise ConfigurationError(
                "KEY_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes, e.g. from "
                "cryptography.fernet.Fernet.generate_key()); one of them is not") from None
    return list(found)


def _seconds(cfg, name: str) -> int:
    value = cfg[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive whole number of seconds, not {value!r}")
    return value


def _check_key_schedule(app: Flask) -> None:
    """Staged key rotation is only safe if a new key is published for longer than anyone caches
    the JWKS, and a retired key for longer than any token it signed lives (docs/signing-keys.md)."""
    cfg = app.config
    rotation, propagation, retention = (_seconds(cfg, f"SIGNING_KEY_{n}_SECONDS") for n in ("ROTATION", "PROPAGATION", "RETENTION"))
    cached = cfg["DISCOVERY_CACHE_SECONDS"] + cfg["SIGNING_KEY_RELOAD_SECONDS"]
    if propagation <= cached:
        raise ConfigurationError(
            f"SIGNING_KEY_PROPAGATION_SECONDS ({propagation}) must exceed DISCOVERY_CACHE_SECONDS + "
            f"SIGNING_KEY_RELOAD_SECONDS ({cached}): relying parties would meet tokens signed by a key they have not fetched")
    longest = max(cfg["ID_TOKEN_LIFETIME_SECONDS"], ACCESS_TOKEN_LIFETIME_MAX) + cfg["JWT_LEEWAY_SECONDS"]
    if retention <= longest:
        raise ConfigurationError(
            f"SIGNING_KEY_RETENTION_SECONDS ({retention}) must exceed the longest token lifetime plus leeway "
            f"({longest}): tokens signed by a retired key would stop verifying before they expire")
    if rotation <= propagation:
        raise ConfigurationError(
            f"SIGNING_KEY_ROTATION_SECONDS ({rotation}) must exceed SIGNING_KEY_PROPAGATION_SECONDS ({propagation})")


def _check_issuer(app: Flask) -> None:
    """An issuer is an https URL (http only in development) without query or fragment (OIDC Discovery 3)."""
    issuer = app.config.get("ISSUER")
    if not issuer:
        return
    schemes = ("http", "https") if is_development(app) else ("https",)
    try:
        parts = urlsplit(issuer)
    except (TypeError, ValueError):  # not a string, or an unclosed "[" (https://[::1)
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment or "#" in issuer:
        raise ConfigurationError(
            f"ISSUER must be an {' or '.join(schemes)} URL without query or fragment, not {issuer!r}"
        )


def _is_number(value, *, integer: bool = False) -> bool:
    return not isinstance(value, bool) and isinstance(value, int if integer else (int, float))


def _check_lifetimes(cfg) -> None:
    """Session lifetimes and purge settings: whole positive seconds (the purge interval may be 0: off)."""
    for name in ("SESSION_IDLE_SECONDS", "SESSION_ABSOLUTE_SECONDS", "PURGE_BATCH_SIZE", "AUDIT_RETENTION_DAYS",
                 "MFA_PENDING_SECONDS", "MFA_RECENT_SECONDS"):
        if not _is_number(cfg[name], integer=True) or cfg[name] < 1:
            raise ConfigurationError(f"{name} must be a whole number of at least 1, not {cfg[name]!r}")
    if not _is_number(cfg["CODE_TOMBSTONE_SECONDS"], integer=True) or cfg["CODE_TOMBSTONE_SECONDS"] < 0:
        raise ConfigurationError(f"CODE_TOMBSTONE_SECONDS must be a whole number of seconds, not {cfg['CODE_TOMBSTONE_SECONDS']!r}")
    if not _is_number(cfg["PURGE_INTERVAL_SECONDS"]) or cfg["PURGE_INTERVAL_SECONDS"] < 0:
        raise ConfigurationError(f"PURGE_INTERVAL_SECONDS must be a number of seconds (0: off), not {cfg['PURGE_INTERVAL_SECONDS']!r}")
    _check_logout_delivery(cfg)


def _check_logout_delivery(cfg) -> None:
    """Back-channel logout settings: positive numbers (the poll interval may be 0: workers send nothing)."""
    for name in ("BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS", "BACKCHANNEL_LOGOUT_RETRY_SECONDS", "BACKCHANNEL_LOGOUT_BACKOFF_SECONDS",
                 "BACKCHANNEL_LOGOUT_MAX_RESPONSE_BYTES", "LOGOUT_TOKEN_LIFETIME_SECONDS",
                 "LOGOUT_DELIVERY_RETENTION_SECONDS"):
        if not _is_number(cfg[name]) or cfg[name] <= 0:
            raise ConfigurationError(f"{name} must be a positive number, not {cfg[name]!r}")
    if not _is_number(cfg["BACKCHANNEL_LOGOUT_POLL_SECONDS"]) or cfg["BACKCHANNEL_LOGOUT_POLL_SECONDS"] < 0:
        raise ConfigurationError("BACKCHANNEL_LOGOUT_POLL_SECONDS must be a number of seconds (0: only the CLI sends), "
                                 f"not {cfg['BACKCHANNEL_LOGOUT_POLL_SECONDS']!r}")


#: Numeric settings read where they are used, with the least each may be (None: the setting may be
#: None, "off"): a value the environment gave as a string (FLASK_LOCKOUT_MAX_FAILURES=10x is not
#: JSON) would otherwise start the server and fail, or worse compare as text, where it is read
#: (SQLite compares any text as larger than a number: a lockout that never locks).
_WHOLE_NUMBERS = {
    "LOCKOUT_MAX_FAILURES": 1, "LOCKOUT_SECONDS": 1,
    "PASSWORD_MIN_LENGTH": 1, "PASSWORD_MAX_LENGTH": 64, "PASSWORD_MIN_DISTINCT_CHARACTERS": 0,
    "TRUST_PROXY_HOPS": 0, "REMEMBER_COOKIE_DURATION_SECONDS": 1,
    "AUTHORIZATION_CODE_LIFETIME_SECONDS": 1, "ID_TOKEN_LIFETIME_SECONDS": 1, "REFRESH_TOKEN_LIFETIME_SECONDS": 1,
    "JWT_LEEWAY_SECONDS": 0, "JWT_MAX_LENGTH": 1, "MAIL_PORT": 1,
    "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1,  # Argon2's own least values
}
_NUMBERS = {
    "SIGNING_KEY_RELOAD_SECONDS": 0, "DISCOVERY_CACHE_SECONDS": 0, "CLIENT_CACHE_SECONDS": 0,
    "LOG_REQUESTS_FLUSH_SECONDS": 0, "MAIL_TIMEOUT_SECONDS": 0,
}
_NUMBERS_OR_NONE = {"DATABASE_STATEMENT_TIMEOUT_SECONDS": 0, "MAX_CONTENT_LENGTH": 1}


def _check_numbers(cfg) -> None:
    """The numeric settings are numbers (whole where they count), each at least its least value."""
    checks = [(name, least, True, False) for name, least in _WHOLE_NUMBERS.items()]
    checks += [(name, least, False, False) for name, least in _NUMBERS.items()]
    checks += [(name, least, name == "MAX_CONTENT_LENGTH", True) for name, least in _NUMBERS_OR_NONE.items()]
    for name, least, whole, may_be_none in checks:
        value = cfg.get(name)
        if may_be_none and value is None:
            continue
        if not _is_number(value, integer=whole) or value < least:
            kind = "a whole number" if whole else "a number"
            raise ConfigurationError(f"{name} must be {kind} of at least {least}, not {value!r}")
    if cfg["PASSWORD_MIN_LENGTH"] > cfg["PASSWORD_MAX_LENGTH"]:
        raise ConfigurationError(f"PASSWORD_MIN_LENGTH ({cfg['PASSWORD_MIN_LENGTH']}) must not exceed "
                                 f"PASSWORD_MAX_LENGTH ({cfg['PASSWORD_MAX_LENGTH']})")


#: On/off settings. FLASK_REGISTRATION_ENABLED=False is not JSON (JSON says false), so it arrives as
#: the string "False", which Python reads as true: the switch would be on.
SWITCHES = ("REGISTRATION_ENABLED", "PASSKEY_SIGNIN_ENABLED", "RATELIMIT_ENABLED", "RATELIMIT_HEADERS_ENABLED",
            "LOG_REQUESTS", "SESSION_COOKIE_HTTPONLY", "REMEMBER_COOKIE_HTTPONLY", "ROTATION_SYNCHRONOUS_COMMIT",
            "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_SUPPRESS_SEND", "SESSION_COOKIE_SECURE")


def _check_switches(cfg) -> None:
    """Every on/off setting is true or false (SESSION_COOKIE_SECURE may also be None: by the environment)."""
    for name in SWITCHES:
        value = cfg.get(name)
        if not isinstance(value, bool) and not (name == "SESSION_COOKIE_SECURE" and value is None):
            raise ConfigurationError(f"{name} must be true or false (FLASK_{name}=true or false, in lower case), "
                                     f"not {value!r}")


def _check_grant_types(cfg) -> None:
    """GRANT_TYPES_ENABLED: a list of known grant types (a plain string would be read as its letters)."""
    value = cfg["GRANT_TYPES_ENABLED"]
    known = (*GRANT_TYPES, "refresh_token")
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) for g in value):
        raise ConfigurationError(f"GRANT_TYPES_ENABLED must be a JSON list of grant types, not {value!r}")
    unknown = [g for g in value if g not in known]
    if unknown:
        raise ConfigurationError(f"GRANT_TYPES_ENABLED: unknown grant type {unknown[0]!r}; use some of {', '.join(known)}")


def _check_database_uri(cfg) -> None:
    """SQLALCHEMY_DATABASE_URI, if set, is a SQLite or PostgreSQL URL (the message never shows it:
    it may hold a password)."""
    uri = cfg.get("SQLALCHEMY_DATABASE_URI")
    if uri in (None, ""):
        return
    try:
        backend = make_url(uri).get_backend_name()
    except (ArgumentError, TypeError, ValueError):
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError("SQLALCHEMY_DATABASE_URI must be a sqlite:/// or postgresql+psycopg:// URL "
                                 "(e.g. postgresql+psycopg://user:password@host/db)")


#: The limits Flask-Limiter reads (extensions.py, api/limits.py): one it cannot parse it skips,
#: logging an error per request, so a typo would turn that rate limit off.
RATE_LIMITS = ("RATELIMIT_SENSITIVE", "RATELIMIT_DEFAULT", "RATELIMIT_PER_TOKEN", "RATELIMIT_PASSWORD_CHECK",
               "RATELIMIT_PASSWORD_RESET", "RATELIMIT_PASSWORD_RESET_ACCOUNT", "RATELIMIT_REGISTRATION",
               "RATELIMIT_EMAIL")


def _check_rate_limits(cfg) -> None:
    """Every rate limit parses, as Flask-Limiter reads it ("100 per minute", "10/hour;2/minute")."""
    from limits import parse_many

    for name in RATE_LIMITS:
        value = cfg.get(name)
        try:
            parse_many(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be a rate limit such as \"100 per minute\", not {value!r}") from None


def _check_metrics_allowed_ips(cfg) -> None:
    """METRICS_ALLOWED_IPS: addresses or CIDR blocks (a list, or one comma-separated string)."""
    value = cfg["METRICS_ALLOWED_IPS"]
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigurationError(f"METRICS_ALLOWED_IPS must be a list of addresses or CIDR blocks, not {value!r}")
    try:
        for item in items:
            if str(item).strip():
                ipaddress.ip_network(str(item).strip(), strict=False)
    except ValueError:
        raise ConfigurationError(f"METRICS_ALLOWED_IPS: {item!r} is not an IP address or CIDR block") from None


def init_app(app: Flask) -> None:
    cfg = app.config
    if not cfg.get("SECRET_KEY") and is_development(app):
        cfg["SECRET_KEY"] = _development_secret_key(app)
    if not cfg.get("KEY_ENCRYPTION_KEY") and is_development(app):
        cfg["KEY_ENCRYPTION_KEY"] = _development_key_encryption_key(app)
    if cfg.get("KEY_ENCRYPTION_KEY"):
        cfg["KEY_ENCRYPTION_KEY"] = _key_encryption_keys(cfg["KEY_ENCRYPTION_KEY"])
    if serves_requests():
        # in development the issuer may come from the request's Host (a local demo; never cached publicly)
        require(app, *(name for name in REQUIRED_TO_SERVE if name not in OPTIONAL_IN_DEVELOPMENT or not is_development(app)))
    _check_numbers(cfg)
    _check_switches(cfg)
    _check_database_uri(cfg)
    _check_rate_limits(cfg)
    _check_grant_types(cfg)
    secure = cfg["SESSION_COOKIE_SECURE"]
    if secure is None:
        secure = not is_development(app)
    cfg["SESSION_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_SECURE"] = bool(secure)
    _check_lifetimes(cfg)
    # "remember me" never outlives the session's absolute lifetime (the server ends it then anyway)
    remember = min(int(cfg["REMEMBER_COOKIE_DURATION_SECONDS"]), cfg["SESSION_ABSOLUTE_SECONDS"])
    cfg["REMEMBER_COOKIE_DURATION"] = timedelta(seconds=remember)
    for name in ("ACCESS_TOKEN_SIGNING_ALG", "ID_TOKEN_SIGNING_ALG"):
        if cfg[name] not in SIGNING_ALGS:
            raise ConfigurationError(f"{name} must be one of {', '.join(SIGNING_ALGS)}, not {cfg[name]!r}")
    if cfg["ID_TOKEN_SIGNING_ALG"] != "RS256":
        # a client gets RS256 ID tokens unless it registered another id_token_signed_response_alg
        # (OpenID Connect Core 3.1.3.7, Registration 2), and this server has no such client setting
        raise ConfigurationError(f"ID_TOKEN_SIGNING_ALG must be RS256, not {cfg['ID_TOKEN_SIGNING_ALG']!r}: OpenID "
                                 "Connect clients expect RS256 ID tokens (ES256 is for access tokens)")
    _check_issuer(app)
    _check_key_schedule(app)
    for name in ("CORS_ORIGINS_CACHE_SECONDS", "DISCOVERY_DOCUMENT_CACHE_SECONDS"):
        if not _is_number(cfg[name]) or cfg[name] < 0:
            raise ConfigurationError(f"{name} must be a number of seconds (0: re-read each time), not {cfg[name]!r}")
    cache = cfg["BEARER_CACHE_SECONDS"]
    if isinstance(cache, bool) or not isinstance(cache, (int, float)) or not 0 <= cache <= 5:
        raise ConfigurationError(f"BEARER_CACHE_SECONDS must be a number of seconds from 0 to 5, not {cache!r}")
    _check_metrics_allowed_ips(cfg)
    for name in ("PASSWORD_RESET_SECONDS", "PASSWORD_RESET_MAILS_PER_HOUR", "EMAIL_VERIFICATION_SECONDS",
                 "EMAIL_VERIFICATION_MAILS_PER_HOUR"):
        if not _is_number(cfg[name], integer=True) or cfg[name] < 1:
            raise ConfigurationError(f"{name} must be a whole number of at least 1, not {cfg[name]!r}")
    if (serves_requests() and not is_development(app) and cfg.get("RATELIMIT_ENABLED")
            and str(cfg.get("RATELIMIT_STORAGE_URI") or "memory://").startswith("memory://")):
        # each worker process counts on its own: N workers give every client N times each limit
        app.logger.warning("rate limits are counted in this worker's memory (RATELIMIT_STORAGE_URI=memory://): "
                           "each worker and instance allows every limit again; set "
                           "FLASK_RATELIMIT_STORAGE_URI=redis://host:6379/0 (docs/passwords.md)")


def proxy_fix(app: Flask, wsgi_app):
    """The outermost WSGI layer: client address, scheme and host from TRUST_PROXY_HOPS proxies (0: none).

    Not X-Forwarded-Prefix: the server answers at the root of its host, and a proxy that does
    not set that header passes on the client's own, which would become the base of redirects."""
    hops = int(app.config["TRUST_PROXY_HOPS"])
    if hops <= 0:
        return wsgi_app
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
