"""Settings derived at start-up: the secret key, cookie flags, proxy trust; and what is required when.

Two kinds of requirement. `REQUIRED_TO_SERVE` lists the settings without which the server must
not serve (SECRET_KEY signs the cookies and CSRF tokens): they are checked when the app is built
to serve requests (gunicorn, `flask run`, any WSGI server), not when it is built for an operator's
command, which serves no page. A command that does need a setting says so with `require`
(identity.cli's `requires_settings`). Either way a missing or wrong setting is one line naming it:
`Error: ...` and exit 1 from the flask command, one line and exit 3 from a server (see
`refuse_to_start`), never a traceback.
"""

import os
import secrets
import sys
import time
from datetime import timedelta

import click
from cryptography.fernet import Fernet
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .checks import ConfigurationError, check_settings


#: Settings the server cannot serve without: name -> how to provide it (after "set FLASK_<name>").
REQUIRED_TO_SERVE: dict[str, str] = {
    "SECRET_KEY": "(or FLASK_ENVIRONMENT=development for a local demo)",
    "ISSUER": "to the public URL, e.g. https://id.example.com (or FLASK_ENVIRONMENT=development for a local demo)",
    "KEY_ENCRYPTION_KEY": "to a Fernet key (docs/signing-keys.md) or FLASK_ENVIRONMENT=development for a local demo",
    "MAIL_SERVER": "to the SMTP host that sends reset links and notices (or FLASK_ENVIRONMENT=development to write them to instance/outbox/)",
}
#: Of those, the ones development does without (the request's host as issuer; mails to instance/outbox/).
OPTIONAL_IN_DEVELOPMENT = ("ISSUER", "MAIL_SERVER")


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


#: The shortest SECRET_KEY a production server takes: 32 hex characters are 128 bits.
SECRET_KEY_MIN_LENGTH = 32


def _check_secret_key_length(key) -> None:
    """The key signs the session and remember-me cookies: a short one can be found offline from any
    cookie (a dictionary or brute force against its HMAC), and then any user's session forged."""
    if len(key) < SECRET_KEY_MIN_LENGTH:
        raise ConfigurationError(f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters, not {len(key)}: set "
                                 "FLASK_SECRET_KEY to a random value, e.g. python -c 'import secrets; "
                                 "print(secrets.token_hex(32))'")


def _secret_key_fallbacks(value) -> list:
    """SECRET_KEY_FALLBACKS (Flask's: earlier keys a session cookie is still read with) as a list.
    A single key is one key: Flask extends its key list with the value, so a string
    (FLASK_SECRET_KEY_FALLBACKS=oldkey, not JSON) became one key per character, and a session cookie
    signed with any one character was taken."""
    if not value:
        return []
    found = [value] if isinstance(value, (str, bytes)) else value
    if not isinstance(found, (list, tuple)) or not all(isinstance(key, (str, bytes)) and key for key in found):
        raise ConfigurationError("SECRET_KEY_FALLBACKS must be a key or a list of keys (FLASK_SECRET_KEY_FALLBACKS="
                                 "'[\"OLD\"]'), earlier SECRET_KEYs a session cookie is still read with")
    return list(found)


def _check_secret_key_fallbacks_length(fallbacks) -> None:
    """A session cookie signed with a fallback is taken as one signed with SECRET_KEY: each is held
    to the same length."""
    for key in fallbacks:
        if len(key) < SECRET_KEY_MIN_LENGTH:
            raise ConfigurationError(f"SECRET_KEY_FALLBACKS: each key must be at least {SECRET_KEY_MIN_LENGTH} "
                                     f"characters, as SECRET_KEY, not {len(key)}: a session cookie signed with it is "
                                     "taken as one signed with SECRET_KEY")


def is_development(app: Flask) -> bool:
    return app.config["ENVIRONMENT"] in ("development", "testing")


def _development_secret_key(app: Flask) -> str:
    """Generate a key once and keep it in instance/, so restarts do not sign everyone out."""
    return _development_secret(app, "secret_key", "SECRET_KEY", lambda: secrets.token_urlsafe(48))


def _development_key_encryption_key(app: Flask) -> str:
    """Like the development SECRET_KEY: one Fernet key in instance/ (0600), kept across restarts,
    so `make run` encrypts its signing keys with nothing set. Losing the file loses the keys."""
    return _development_secret(app, "key_encryption_key", "KEY_ENCRYPTION_KEY", lambda: Fernet.generate_key().decode())


def _development_secret(app: Flask, name: str, setting: str, generate) -> str:
    """The secret in instance/NAME (0600), made by the first process that starts. Another process
    starting at the same moment finds the file made and perhaps not yet written: it waits for
    the content rather than taking an empty secret (or failing on the file it meant to create)."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(generate())
        app.logger.warning("generated a development %s in %s; set FLASK_%s in production", setting, path, setting)
    for _ in range(50):  # another process may have created the file and not yet written it
        with open(path) as f:
            key = f.read().strip()
        if key:
            return key
        time.sleep(0.02)
    raise ConfigurationError(f"{path} is empty: delete it to have a new development {setting} made")


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


def _check_environment(app: Flask) -> None:
    """ENVIRONMENT is production or development ("testing", the test suite's, only under TESTING):
    "testing" relaxed every check as development does, and any other name quietly meant production."""
    names = ("production", "development", "testing") if app.config.get("TESTING") else ("production", "development")
    if app.config["ENVIRONMENT"] not in names:
        raise ConfigurationError(f"ENVIRONMENT must be production or development, not {app.config['ENVIRONMENT']!r}")


def init_app(app: Flask) -> None:
    cfg = app.config
    _check_environment(app)
    if not cfg.get("SECRET_KEY") and is_development(app):
        cfg["SECRET_KEY"] = _development_secret_key(app)
    if not cfg.get("KEY_ENCRYPTION_KEY") and is_development(app):
        cfg["KEY_ENCRYPTION_KEY"] = _development_key_encryption_key(app)
    if cfg.get("KEY_ENCRYPTION_KEY"):
        cfg["KEY_ENCRYPTION_KEY"] = _key_encryption_keys(cfg["KEY_ENCRYPTION_KEY"])
    if serves_requests():
        # in development the issuer may come from the request's Host (a local demo; never cached publicly)
        require(app, *(name for name in REQUIRED_TO_SERVE if name not in OPTIONAL_IN_DEVELOPMENT or not is_development(app)))
    check_settings(cfg, development=is_development(app))  # (SECRET_KEY is text, not a number read as JSON)
    cfg["SECRET_KEY_FALLBACKS"] = _secret_key_fallbacks(cfg.get("SECRET_KEY_FALLBACKS"))
    if serves_requests() and not is_development(app):
        _check_secret_key_length(cfg["SECRET_KEY"])
        _check_secret_key_fallbacks_length(cfg["SECRET_KEY_FALLBACKS"])
    secure = cfg["SESSION_COOKIE_SECURE"]
    if secure is None:
        secure = not is_development(app)
    cfg["SESSION_COOKIE_SECURE"] = bool(secure)
    cfg["REMEMBER_COOKIE_SECURE"] = bool(secure)
    for kind in ("SESSION", "REMEMBER"):
        # a browser ignores a SameSite=None cookie without Secure entirely (RFC 6265bis 5.7):
        # no sign-in would stick
        samesite = cfg.get(f"{kind}_COOKIE_SAMESITE")
        if not secure and isinstance(samesite, str) and samesite.title() == "None":
            raise ConfigurationError(f"{kind}_COOKIE_SAMESITE=None needs Secure cookies (SESSION_COOKIE_SECURE=true, "
                                     "served over https): browsers ignore a SameSite=None cookie without Secure")
        # and a cookie whose name has the __Secure- or __Host- prefix (RFC 6265bis 4.1.3, any case)
        if not secure and str(cfg[f"{kind}_COOKIE_NAME"]).lower().startswith(("__secure-", "__host-")):
            raise ConfigurationError(f"{kind}_COOKIE_NAME {cfg[f'{kind}_COOKIE_NAME']!r} needs Secure cookies "
                                     "(SESSION_COOKIE_SECURE=true, served over https): browsers ignore a "
                                     "__Secure- or __Host- cookie without Secure")
    # "remember me" never outlives the session's absolute lifetime (the server ends it then anyway)
    remember = min(int(cfg["REMEMBER_COOKIE_DURATION_SECONDS"]), cfg["SESSION_ABSOLUTE_SECONDS"])
    cfg["REMEMBER_COOKIE_DURATION"] = timedelta(seconds=remember)
    _bound_rate_limit_store(cfg)
    if (serves_requests() and not is_development(app) and cfg.get("RATELIMIT_ENABLED")
            and _storage_scheme(cfg) == "memory"):
        # each worker process counts on its own: N workers give every client N times each limit
        app.logger.warning("rate limits are counted in this worker's memory (RATELIMIT_STORAGE_URI=memory://): "
                           "each worker and instance allows every limit again; set "
                           "FLASK_RATELIMIT_STORAGE_URI=redis://host:6379/0 (docs/passwords.md)")


#: The rate-limit stores that take redis-py's connection settings: a sentinel's and a cluster's too
#: (Redis's high availability), whose requests otherwise waited redis-py's 5 s on a paused Redis.
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster",
                  "valkey", "valkeys", "valkey+unix", "valkey+sentinel", "valkey+cluster")


def _storage_scheme(cfg) -> str:
    """RATELIMIT_STORAGE_URI's scheme in lower case, as Flask-Limiter and redis-py read it (RFC 3986 3.1:
    REDIS:// is redis://, which once went without the timeouts below)."""
    return str(cfg.get("RATELIMIT_STORAGE_URI") or "memory://").split("://", 1)[0].lower()


def _bound_rate_limit_store(cfg) -> None:
    """A Redis store connects and reads within RATELIMIT_STORAGE_TIMEOUT_SECONDS (unless
    RATELIMIT_STORAGE_OPTIONS says otherwise): redis-py has no timeout by default, so a Redis that
    accepts and never answers held each request that checked it for seconds."""
    scheme = _storage_scheme(cfg)
    if scheme not in _REDIS_SCHEMES:
        return
    options = dict(cfg.get("RATELIMIT_STORAGE_OPTIONS") or {})
    for name in ("socket_timeout", "socket_connect_timeout"):
        options.setdefault(name, cfg["RATELIMIT_STORAGE_TIMEOUT_SECONDS"])
    if scheme.endswith("+cluster") and "retry" not in options:
        # redis-py's cluster client retries a failed command 10 times with a growing backoff: a
        # cluster gone or paused held each request 1.7-2 s, whatever the timeout. No retry: the
        # in-memory fallback counts meanwhile, and the store is tried again a second later.
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options["retry"] = Retry(NoBackoff(), 0)
    if scheme.endswith("+sentinel"):
        # the sentinels are asked for the master on their own connections, which the limits
        # package gives none of the options above: a sentinel that does not answer held each lookup 5 s
        sentinels = dict(options.get("sentinel_kwargs") or {})
        for name in ("socket_timeout", "socket_connect_timeout"):
            sentinels.setdefault(name, options[name])
        options["sentinel_kwargs"] = sentinels
        # counts read from the master, not a replica: one cut off from its master keeps serving its
        # old data (replica-serve-stale-data), and the limits that a read checks (a refused link's)
        # read 0 there for good
        options.setdefault("use_replicas", False)
    cfg["RATELIMIT_STORAGE_OPTIONS"] = options
    _check_redis_options(cfg["RATELIMIT_STORAGE_URI"], options)


#: RATELIMIT_STORAGE_OPTIONS that the limits package takes for itself, not redis-py
_LIMITS_OWN_OPTIONS = ("key_prefix", "wrap_exceptions", "connection_pool")


def _check_redis_options(uri: str, options: dict) -> None:
    """Options redis-py takes: it keeps any keyword until it connects, and then every connection
    failed (TypeError), which Flask-Limiter reports as an unreachable store and counts each worker
    in its memory for good. A connection object is made here, without connecting."""
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss", "redis+unix"):
        return  # valkey's package is optional; its own store refuses what it cannot use
    import redis

    taken = {name: value for name, value in options.items() if name not in _LIMITS_OWN_OPTIONS}
    try:
        # redis-py names redis+unix:// (the limits package's) unix://
        url = "unix://" + uri.split("://", 1)[1] if scheme == "redis+unix" else uri
        redis.Redis.from_url(url, **taken).connection_pool.make_connection()
    except TypeError as err:  # unexpected keyword argument 'socket_timout' (the message names no value)
        raise ConfigurationError(f"RATELIMIT_STORAGE_OPTIONS cannot be used with redis: {err}") from None
    except ValueError as err:  # the URL's own options: "Invalid value for 'socket_timeout' in connection URL."
        raise ConfigurationError(f"RATELIMIT_STORAGE_URI cannot be used with redis: {err}") from None


def proxy_fix(app: Flask, wsgi_app):
    """The outermost WSGI layer: client address, scheme and host from TRUST_PROXY_HOPS proxies (0: none).

    Not X-Forwarded-Prefix: the server answers at the root of its host, and a proxy that does
    not set that header passes on the client's own, which would become the base of redirects."""
    hops = int(app.config["TRUST_PROXY_HOPS"])
    if hops <= 0:
        return wsgi_app
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
