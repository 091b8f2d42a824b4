"""The value of each setting, checked at start: one ConfigurationError naming the setting.

A value from the environment arrives as JSON when it parses as JSON and as a string otherwise,
so a typo (FLASK_LOCKOUT_MAX_FAILURES=10x, FLASK_REGISTRATION_ENABLED=False) would otherwise
start the server and fail, or quietly mean something else, where the setting is read.
"""

import ipaddress
import math
import re
from email.utils import parseaddr
from urllib.parse import parse_qsl, urlsplit

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..constants import ACCESS_TOKEN_LIFETIME_MAX, GRANT_TYPES, PASSWORD_INPUT_MAX
from ..services.login_names import mailbox_problem

SIGNING_ALGS = ("RS256", "ES256")


class ConfigurationError(click.ClickException):
    """A setting that is missing or wrong; its message is one line naming the setting.

    A ClickException, so the flask command prints it as `Error: <message>` and exits 1.
    """


def check_settings(cfg, *, development: bool) -> None:
    """Check every setting's value (the settings required to serve are startup.require's)."""
    _check_texts(cfg)
    _check_numbers(cfg)
    _check_switches(cfg)
    _check_database_uri(cfg)
    _check_rate_limits(cfg)
    _check_rate_limit_storage(cfg)
    _check_grant_types(cfg)
    _check_lifetimes(cfg)
    _check_signing_algs(cfg)
    _check_issuer(cfg, development)
    _check_key_schedule(cfg)
    _check_caches(cfg)
    _check_metrics_allowed_ips(cfg)
    _check_account_mails(cfg)
    _check_cookies(cfg)
    _check_option_objects(cfg)
    _check_mail_sender(cfg)
    _check_mail_connection(cfg)
    _check_stored_durations(cfg)
    _check_statement_timeout(cfg)


def _check_signing_algs(cfg) -> None:
    for name in ("ACCESS_TOKEN_SIGNING_ALG", "ID_TOKEN_SIGNING_ALG"):
        if cfg[name] not in SIGNING_ALGS:
            raise ConfigurationError(f"{name} must be one of {', '.join(SIGNING_ALGS)}, not {cfg[name]!r}")
    if cfg["ID_TOKEN_SIGNING_ALG"] != "RS256":
        # a client gets RS256 ID tokens unless it registered another id_token_signed_response_alg
        # (OpenID Connect Core 3.1.3.7, Registration 2), and this server has no such client setting
        raise ConfigurationError(f"ID_TOKEN_SIGNING_ALG must be RS256, not {cfg['ID_TOKEN_SIGNING_ALG']!r}: OpenID "
                                 "Connect clients expect RS256 ID tokens (ES256 is for access tokens)")


def _check_caches(cfg) -> None:
    for name in ("CORS_ORIGINS_CACHE_SECONDS", "DISCOVERY_DOCUMENT_CACHE_SECONDS"):
        if not _is_number(cfg[name]) or cfg[name] < 0:
            raise ConfigurationError(f"{name} must be a number of seconds (0: re-read each time), not {cfg[name]!r}")
    cache = cfg["BEARER_CACHE_SECONDS"]
    if isinstance(cache, bool) or not isinstance(cache, (int, float)) or not 0 <= cache <= 5:
        raise ConfigurationError(f"BEARER_CACHE_SECONDS must be a number of seconds from 0 to 5, not {cache!r}")


def _check_account_mails(cfg) -> None:
    for name in ("PASSWORD_RESET_SECONDS", "PASSWORD_RESET_MAILS_PER_HOUR", "EMAIL_VERIFICATION_SECONDS",
                 "EMAIL_VERIFICATION_MAILS_PER_HOUR"):
        if not _is_number(cfg[name], integer=True) or cfg[name] < 1:
            raise ConfigurationError(f"{name} must be a whole number of at least 1, not {cfg[name]!r}")


def _seconds(cfg, name: str) -> int:
    value = cfg[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive whole number of seconds, not {value!r}")
    return value


def _check_key_schedule(cfg) -> None:
    """Staged key rotation is only safe if a new key is published for longer than anyone caches
    the JWKS, and a retired key for longer than any token it signed lives (docs/signing-keys.md)."""
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


def _check_issuer(cfg, development: bool) -> None:
    """An issuer is an https URL (http only in development) without query or fragment (OIDC Discovery 3)."""
    issuer = cfg.get("ISSUER")
    if issuer is None or issuer == "":
        return
    if not isinstance(issuer, str):  # FLASK_ISSUER=123 is JSON: a number
        raise ConfigurationError(f"ISSUER must be an https URL, not {type(issuer).__name__} {issuer!r}")
    schemes = ("http", "https") if development else ("https",)
    if any(c.isspace() or not c.isprintable() for c in issuer):
        # urlsplit drops tabs and line breaks and strips leading blanks, so it would pass; the issuer
        # is used as it is: discovery, every endpoint and every token's iss would carry them
        raise ConfigurationError(f"ISSUER must be a URL without spaces, line breaks or control characters, not {issuer!r}")
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018  (raises on a port that is not a number from 0 to 65535: https://id.example.com:99999)
    except (TypeError, ValueError):  # not a string, an unclosed "[" (https://[::1), or such a port
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment or "#" in issuer or "?" in issuer:
        raise ConfigurationError(
            f"ISSUER must be an {' or '.join(schemes)} URL without query or fragment, not {issuer!r}"
        )


def _is_number(value, *, integer: bool = False) -> bool:
    """A number, not a bool; a finite one (FLASK_*=NaN or Infinity is JSON to Python's json, and NaN
    passes every "at least" comparison: PASSWORD_MIN_GUESSES_LOG10=NaN refused no password)."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


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
    "REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS": 1,
    "JWT_LEEWAY_SECONDS": 0, "JWT_MAX_LENGTH": 1, "MAIL_PORT": 1,
    "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST_KIB": 8, "ARGON2_PARALLELISM": 1,  # Argon2's own least values
    # the Cache-Control max-age of discovery and the JWKS: delta-seconds are digits (RFC 9111 1.2.2)
    "DISCOVERY_CACHE_SECONDS": 0,
}
_NUMBERS = {
    "SIGNING_KEY_RELOAD_SECONDS": 0, "CLIENT_CACHE_SECONDS": 0,
    "LOG_REQUESTS_FLUSH_SECONDS": 0, "PASSWORD_MIN_GUESSES_LOG10": 0,
    # smtplib refuses a timeout of 0 (a non-blocking socket): every mail would fail
    "MAIL_TIMEOUT_SECONDS": 0.01, "RATELIMIT_STORAGE_TIMEOUT_SECONDS": 0.01,
}
_NUMBERS_OR_NONE = {"DATABASE_STATEMENT_TIMEOUT_SECONDS": 0, "MAX_CONTENT_LENGTH": 1,
                    "WTF_CSRF_TIME_LIMIT": 1}  # Flask-WTF's: None, a CSRF token good for the session's life


#: Durations added to the time and stored (a lock's end, a link's, a code's, a refresh token's). The
#: columns were PostgreSQL integers (32 bits, up to 2038), and a longer one made the write that
#: stored it fail ('integer out of range', a 503) at the first lockout, reset mail or sign-in; they
#: are BIGINT now (models/wide_integers.py), and the bound stays: no deployment means a longer one
#: (a lock "until an operator unlocks it" is `users disable`), and times stay dates a log can print.
STORED_DURATIONS = ("LOCKOUT_SECONDS", "PASSWORD_RESET_SECONDS", "EMAIL_VERIFICATION_SECONDS",
                    "AUTHORIZATION_CODE_LIFETIME_SECONDS", "REFRESH_TOKEN_LIFETIME_SECONDS",
                    # a spent half-finished sign-in's id is kept this long (accounts.pending_spent_until);
                    # a staged key signs from now + this (keys: activates_at)
                    "MFA_PENDING_SECONDS", "SIGNING_KEY_PROPAGATION_SECONDS")
LONGEST_STORED_DURATION = 10 * 365 * 24 * 3600


#: Durations a cookie's expiry date is made of: "keep me signed in" lasts the least of them, and a
#: date past the year 9999 made every such sign-in a 500 (OverflowError); longer still, the start failed.
COOKIE_DURATIONS = ("SESSION_IDLE_SECONDS", "SESSION_ABSOLUTE_SECONDS", "REMEMBER_COOKIE_DURATION_SECONDS")


def _check_stored_durations(cfg) -> None:
    """Each of STORED_DURATIONS and COOKIE_DURATIONS (a number by now) is at most LONGEST_STORED_DURATION."""
    for name in STORED_DURATIONS:
        if cfg[name] > LONGEST_STORED_DURATION:
            raise ConfigurationError(f"{name} must be at most {LONGEST_STORED_DURATION} seconds (10 years), not "
                                     f"{cfg[name]!r}: the time it ends is stored, and a longer one is a mistake")
    for name in COOKIE_DURATIONS:
        if cfg[name] > LONGEST_STORED_DURATION:
            raise ConfigurationError(f"{name} must be at most {LONGEST_STORED_DURATION} seconds (10 years), not "
                                     f"{cfg[name]!r}: a session cookie's expiry date is made of it")


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
    if cfg["PASSWORD_MAX_LENGTH"] > PASSWORD_INPUT_MAX:
        raise ConfigurationError(f"PASSWORD_MAX_LENGTH must be at most {PASSWORD_INPUT_MAX}, not {cfg['PASSWORD_MAX_LENGTH']}: "
                                 "the pages, the local API and the seed file take no longer password")
    if cfg["PASSWORD_MIN_LENGTH"] > cfg["PASSWORD_MAX_LENGTH"]:
        raise ConfigurationError(f"PASSWORD_MIN_LENGTH ({cfg['PASSWORD_MIN_LENGTH']}) must not exceed "
                                 f"PASSWORD_MAX_LENGTH ({cfg['PASSWORD_MAX_LENGTH']})")
    if cfg["PASSWORD_MIN_DISTINCT_CHARACTERS"] > cfg["PASSWORD_MAX_LENGTH"]:
        # no password could be set: registration, reset, change and seed all refused every one
        raise ConfigurationError(f"PASSWORD_MIN_DISTINCT_CHARACTERS ({cfg['PASSWORD_MIN_DISTINCT_CHARACTERS']}) must not "
                                 f"exceed PASSWORD_MAX_LENGTH ({cfg['PASSWORD_MAX_LENGTH']})")
    _check_argon2(cfg)


#: Argon2's largest values (RFC 9106 3.1: 32-bit counts, at most 2^24 - 1 lanes)
_ARGON2_MOST = {"ARGON2_TIME_COST": 2 ** 32 - 1, "ARGON2_MEMORY_COST_KIB": 2 ** 32 - 1, "ARGON2_PARALLELISM": 2 ** 24 - 1}


def _check_argon2(cfg) -> None:
    """Argon2's costs together (each is a whole number of at least its least by now): within its
    counts, and at least 8 KiB of memory per lane. Otherwise every hash failed (HashingError), so
    every sign-in and `flask seed` did, with a server that had started."""
    for name, most in _ARGON2_MOST.items():
        if cfg[name] > most:
            raise ConfigurationError(f"{name} must be at most {most}, not {cfg[name]!r}: Argon2 takes no more")
    if cfg["ARGON2_MEMORY_COST_KIB"] < 8 * cfg["ARGON2_PARALLELISM"]:
        raise ConfigurationError(f"ARGON2_MEMORY_COST_KIB ({cfg['ARGON2_MEMORY_COST_KIB']}) must be at least 8 times "
                                 f"ARGON2_PARALLELISM ({cfg['ARGON2_PARALLELISM']}): Argon2 needs 8 KiB per lane")


#: Settings that are text (SECRET_KEY may be bytes too, from a config file). FLASK_SECRET_KEY made of
#: digits, or FLASK_MAIL_PASSWORD=true, is JSON and arrives as a number or a bool: the server would
#: start and fail every page (itsdangerous) or every mail (smtplib's login) instead.
TEXTS = ("SECRET_KEY", "MAIL_SERVER", "MAIL_USERNAME", "MAIL_PASSWORD")


def _check_texts(cfg) -> None:
    """Each text setting is a string or unset; the message never shows the value (it may be a secret)."""
    for name in TEXTS:
        value = cfg.get(name)
        if value is not None and not isinstance(value, (bytes, str) if name == "SECRET_KEY" else str):
            raise ConfigurationError(f"{name} must be text, not {type(value).__name__}: FLASK_{name} was read as "
                                     f"JSON; quote a value of digits or true/false/null (FLASK_{name}='\"...\"')")
    # the pages' title, the mails' sender name and subject, the authenticator app's and passkey's
    # issuer: FLASK_PRODUCT_NAME=2026 (a number) failed every new password, null every mail
    product = cfg.get("PRODUCT_NAME")
    if not isinstance(product, str) or not product.strip():
        raise ConfigurationError(f"PRODUCT_NAME must be text, not {product!r}: FLASK_PRODUCT_NAME was read as JSON; "
                                 "quote a value of digits or true/false/null (FLASK_PRODUCT_NAME='\"...\"')")


#: On/off settings. FLASK_REGISTRATION_ENABLED=False is not JSON (JSON says false), so it arrives as
#: the string "False", which Python reads as true: the switch would be on.
SWITCHES = ("REGISTRATION_ENABLED", "PASSKEY_SIGNIN_ENABLED", "RATELIMIT_ENABLED", "RATELIMIT_HEADERS_ENABLED",
            "LOG_REQUESTS", "SESSION_COOKIE_HTTPONLY", "REMEMBER_COOKIE_HTTPONLY", "ROTATION_SYNCHRONOUS_COMMIT",
            "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_SUPPRESS_SEND", "SESSION_COOKIE_SECURE",
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED")


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
        url = make_url(uri)
        backend = url.get_backend_name()
    except (ArgumentError, TypeError, ValueError):
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError("SQLALCHEMY_DATABASE_URI must be a sqlite:/// or postgresql+psycopg:// URL "
                                 "(e.g. postgresql+psycopg://user:password@host/db)")
    try:  # the driver it names (postgresql+psycopg2://, +asyncpg://) is one SQLAlchemy can load here
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise ConfigurationError(f"SQLALCHEMY_DATABASE_URI names a database driver that is not installed "
                                 f"({url.get_driver_name()}): use sqlite:/// or postgresql+psycopg://") from None
    if backend == "postgresql":
        _check_libpq_options(url)
    else:
        _check_sqlite_options(uri, url)


#: the query options of a sqlite:/// URL SQLAlchemy passes to Python's sqlite3, and with
#: `uri=true` those SQLite reads from a URI filename (https://sqlite.org/uri.html)
SQLITE_DRIVER_OPTIONS = frozenset({"uri", "timeout", "isolation_level", "detect_types", "check_same_thread",
                                   "cached_statements"})
SQLITE_URI_OPTIONS = frozenset({"vfs", "mode", "cache", "psow", "nolock", "immutable"})


def _check_sqlite_options(uri: str, url) -> None:
    """The URL's query options are SQLite's: SQLAlchemy drops any other with a warning, so a `?`
    in the file's path (sqlite:////srv/id?2/identity.db) cut the path short there, and the server
    and every command used a new, empty database (/srv/id) instead."""
    known = SQLITE_DRIVER_OPTIONS
    if str(url.query.get("uri", "")).lower() in ("true", "1"):
        known = known | SQLITE_URI_OPTIONS
    query = uri.split("?", 1)[1] if "?" in uri else ""  # SQLAlchemy's URL drops a name with no `=`
    unknown = sorted(name for name, _ in parse_qsl(query, keep_blank_values=True) if name not in known)
    if unknown:
        raise ConfigurationError(f"SQLALCHEMY_DATABASE_URI: {unknown[0]!r} is not a SQLite connection option "
                                 f"(such as timeout); a '?' in the database file's path is written %3F")


def _check_libpq_options(url) -> None:
    """The URL's query options are libpq's (sslmode, connect_timeout, ...): one it does not know
    (?sslmod=require) refuses every connection, which a server could only log as the database
    being unreachable ("ProgrammingError"), an outage to wait out."""
    from psycopg import pq

    known = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    unknown = sorted(name for name in url.query if name not in known)
    if unknown:
        raise ConfigurationError(f"SQLALCHEMY_DATABASE_URI: {unknown[0]!r} is not a PostgreSQL connection option "
                                 f"(libpq's, such as sslmode or connect_timeout)")


#: The limits Flask-Limiter reads (extensions.py, api/limits.py): one it cannot parse it skips,
#: logging an error per request, so a typo would turn that rate limit off.
RATE_LIMITS = ("RATELIMIT_SENSITIVE", "RATELIMIT_DEFAULT", "RATELIMIT_PER_TOKEN", "RATELIMIT_PASSWORD_CHECK",
               "RATELIMIT_PASSWORD_RESET", "RATELIMIT_PASSWORD_RESET_ACCOUNT", "RATELIMIT_REGISTRATION",
               "RATELIMIT_REGISTRATION_ADDRESS", "RATELIMIT_EMAIL")


def _check_rate_limits(cfg) -> None:
    """Every rate limit parses, as Flask-Limiter reads it ("100 per minute", "10/hour;2/minute")."""
    from limits import parse_many

    for name in RATE_LIMITS:
        value = cfg.get(name)
        try:
            parse_many(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name} must be a rate limit such as \"100 per minute\", not {value!r}") from None


def _check_rate_limit_storage(cfg) -> None:
    """RATELIMIT_STORAGE_URI is a URI of a store Flask-Limiter knows (memory://, redis://host:6379/0, ...):
    it would otherwise stop the server and every command with its traceback, which prints the URI
    (and a store's password with it). The message names the scheme only; a store whose package is
    missing is refused when Flask-Limiter builds it (identity/__init__.py)."""
    from limits.storage import SCHEMES

    uri = cfg.get("RATELIMIT_STORAGE_URI")
    if uri is None:
        return  # Flask-Limiter's own default: memory://
    problem = None
    if not isinstance(uri, str):
        problem = f"not a {type(uri).__name__}"
    else:
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018  (raises on a port that is not a number in range)
        except ValueError:
            problem = "it does not parse"
        else:
            if parts.scheme not in SCHEMES:
                problem = f"unknown scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    if problem:
        raise ConfigurationError(f"RATELIMIT_STORAGE_URI must be a store Flask-Limiter knows, such as "
                                 f"redis://host:6379/0 or memory:// ({problem})")


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


#: A cookie name is an RFC 6265 token (section 4.1.1): no spaces, separators or control characters.
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_cookies(cfg) -> None:
    """The session and remember-me cookies' names and SameSite values are ones a response can set:
    werkzeug raises on a SameSite it does not know, and on a name that is not text, at the first
    response that sets the cookie (every page, or every "keep me signed in" sign-in: a 500)."""
    names = {}
    for kind in ("SESSION", "REMEMBER"):
        name = cfg.get(f"{kind}_COOKIE_NAME")
        if not isinstance(name, str) or not _COOKIE_NAME.fullmatch(name):
            raise ConfigurationError(f"{kind}_COOKIE_NAME must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), "
                                     f"not {name!r}")
        names[kind] = name
        samesite = cfg.get(f"{kind}_COOKIE_SAMESITE")
        if samesite is not None and (not isinstance(samesite, str) or samesite.title() not in ("Strict", "Lax", "None")):
            raise ConfigurationError(f"{kind}_COOKIE_SAMESITE must be Strict, Lax or None, not {samesite!r}")
    if names["SESSION"] == names["REMEMBER"]:
        raise ConfigurationError(f"REMEMBER_COOKIE_NAME must differ from SESSION_COOKIE_NAME ({names['SESSION']!r})")


#: PostgreSQL's largest statement_timeout, in seconds (its milliseconds are a 32-bit integer)
LONGEST_STATEMENT_TIMEOUT = (2 ** 31 - 1) // 1000


def _check_statement_timeout(cfg) -> None:
    """DATABASE_STATEMENT_TIMEOUT_SECONDS (a number or None by now) fits PostgreSQL's statement_timeout:
    a longer one made PostgreSQL refuse every connection (FATAL: invalid value for parameter)."""
    seconds = cfg.get("DATABASE_STATEMENT_TIMEOUT_SECONDS")
    if seconds is not None and seconds > LONGEST_STATEMENT_TIMEOUT:
        raise ConfigurationError(f"DATABASE_STATEMENT_TIMEOUT_SECONDS must be at most {LONGEST_STATEMENT_TIMEOUT} "
                                 f"(PostgreSQL's longest statement_timeout; 0: none), not {seconds!r}")


def _check_mail_connection(cfg) -> None:
    """A host name without blanks, a port that exists, and one kind of TLS: MAIL_USE_SSL speaks TLS
    from the start, MAIL_USE_TLS asks for STARTTLS after connecting; both would ask a TLS connection
    for STARTTLS, and fail."""
    server = cfg.get("MAIL_SERVER")
    if isinstance(server, str) and any(c.isspace() or not c.isprintable() for c in server):
        # an env file's trailing line break: every mail failed to resolve the host
        raise ConfigurationError(f"MAIL_SERVER must be a host name without spaces or line breaks, not {server!r}")
    if cfg["MAIL_PORT"] > 65535:
        raise ConfigurationError(f"MAIL_PORT must be a port number from 1 to 65535, not {cfg['MAIL_PORT']!r}")
    if cfg["MAIL_USE_TLS"] and cfg["MAIL_USE_SSL"]:
        raise ConfigurationError("MAIL_USE_TLS and MAIL_USE_SSL are both true: set one, MAIL_USE_SSL for TLS from the "
                                 "start (port 465) or MAIL_USE_TLS for STARTTLS (port 587)")


def _check_mail_sender(cfg) -> None:
    """MAIL_DEFAULT_SENDER is text ("Example ID <no-reply@example.com>") or Flask-Mail's (name,
    address) tuple: FLASK_MAIL_DEFAULT_SENDER=5 is JSON, a number, and every mail failed in Flask-Mail."""
    value = cfg.get("MAIL_DEFAULT_SENDER")
    if value is None:
        return
    if isinstance(value, str):
        address = parseaddr(value)[1]
    elif isinstance(value, tuple) and len(value) == 2 and all(isinstance(part, str) for part in value):
        address = value[1]
    else:
        raise ConfigurationError(f"MAIL_DEFAULT_SENDER must be text such as \"Example ID <no-reply@example.com>\", not "
                                 f"{type(value).__name__}: quote a value JSON would read (FLASK_MAIL_DEFAULT_SENDER='\"...\"')")
    # the recipients' rule (login_names.mailbox_problem): a part before the @ that is not ASCII
    # cannot go on an envelope here (no SMTPUTF8), and every mail failed (UnicodeEncodeError)
    problem = mailbox_problem(address)
    if problem:
        raise ConfigurationError(f"MAIL_DEFAULT_SENDER {address!r}: {problem}")


def _check_option_objects(cfg) -> None:
    """The options handed to SQLAlchemy's create_engine and to the rate-limit store are JSON objects
    (FLASK_SQLALCHEMY_ENGINE_OPTIONS='{"pool_size": 2}'); an option create_engine does not know is
    refused when the engine is made (services/schema.py)."""
    for name in ("SQLALCHEMY_ENGINE_OPTIONS", "RATELIMIT_STORAGE_OPTIONS"):
        value = cfg.get(name)
        if value is not None and not isinstance(value, dict):
            raise ConfigurationError(f"{name} must be a JSON object of options (FLASK_{name}='{{\"name\": value}}'), "
                                     f"not {type(value).__name__}")
    engine = cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    if "poolclass" in engine and not isinstance(engine["poolclass"], type):  # a name from JSON: create_engine's AttributeError
        raise ConfigurationError("SQLALCHEMY_ENGINE_OPTIONS: poolclass must be a pool class (in instance/config.py), "
                                 f"not {type(engine['poolclass']).__name__}")
    _check_isolation_level(cfg)
    _check_connect_args(cfg)


def _database_backend(cfg) -> str | None:
    """The backend SQLALCHEMY_DATABASE_URI names (sqlite without one: the default database), or None
    for a URI that does not parse (which _check_database_uri refuses)."""
    try:
        return make_url(cfg.get("SQLALCHEMY_DATABASE_URI") or "sqlite://").get_backend_name()
    except (ArgumentError, TypeError, ValueError):
        return None


#: the isolation levels SQLAlchemy's dialects accept (written as it compares them: upper case, no "_")
ISOLATION_LEVELS = {"sqlite": {"SERIALIZABLE", "READ UNCOMMITTED", "AUTOCOMMIT"},
                    "postgresql": {"READ COMMITTED", "READ UNCOMMITTED", "REPEATABLE READ", "SERIALIZABLE", "AUTOCOMMIT"}}


def _check_isolation_level(cfg) -> None:
    """SQLALCHEMY_ENGINE_OPTIONS' isolation_level is one the database has: SQLAlchemy checks it only at
    the first connection (ArgumentError), a traceback in every command and \"database unreachable\" in a server."""
    engine = cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    if "isolation_level" not in engine:
        return
    level = engine["isolation_level"]
    backend = _database_backend(cfg)
    if backend is None:
        return  # _check_database_uri has said so
    levels = ISOLATION_LEVELS.get(backend, set())
    if not isinstance(level, str) or level.replace("_", " ").upper() not in levels:
        raise ConfigurationError(f"SQLALCHEMY_ENGINE_OPTIONS: isolation_level must be one of {', '.join(sorted(levels))}, "
                                 f"not {level!r}")


#: what psycopg's connect takes besides libpq's keywords (deployment.md: prepare_threshold behind PgBouncer)
PSYCOPG_CONNECT_ARGS = frozenset({"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"})


def _check_connect_args(cfg) -> None:
    """SQLALCHEMY_ENGINE_OPTIONS' connect_args are ones the driver takes: every connection failed
    otherwise (TypeError from sqlite3, \"invalid connection option\" from libpq), which a server can only
    log as the database being unreachable, an outage to wait out, as for an unknown option in the URI."""
    args = (cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {}).get("connect_args")
    if args is None:
        return
    if not isinstance(args, dict):
        raise ConfigurationError(f"SQLALCHEMY_ENGINE_OPTIONS: connect_args must be a JSON object, not {type(args).__name__}")
    backend = _database_backend(cfg)
    if backend is None:
        return  # _check_database_uri has said so
    if backend == "postgresql":
        from psycopg import pq

        known = {option.keyword.decode() for option in pq.Conninfo.get_defaults()} | PSYCOPG_CONNECT_ARGS
        unknown = sorted(name for name in args if name not in known)
        if unknown:
            raise ConfigurationError(f"SQLALCHEMY_ENGINE_OPTIONS: connect_args {unknown[0]!r} is not a PostgreSQL "
                                     "connection option (libpq's, such as sslmode, or psycopg's prepare_threshold)")
        return
    import sqlite3

    try:  # sqlite3 checks each argument's name and value as it opens a connection; :memory: touches no file
        sqlite3.connect(":memory:", **{name: value for name, value in args.items() if name != "uri"}).close()
    except (TypeError, ValueError, OverflowError, sqlite3.Error) as err:
        raise ConfigurationError(f"SQLALCHEMY_ENGINE_OPTIONS: connect_args cannot be used with SQLite: {err}") from None
