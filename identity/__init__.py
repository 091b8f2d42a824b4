"""The OpenID provider and the user accounts."""

from flask import Flask
from limits.errors import ConfigurationError as LimitsConfigurationError

from . import cli, oauth2
from .config import startup
from .extensions import csrf, limiter
from .rate_limiter import StoreUnreachableAtStart
from .plumbing import headers, login_session, signed_cookie, wsgi
from .services import logout_delivery, mail, schema
from .web import errors, register_blueprints


def init_app(app: Flask) -> None:
    """Attach the provider to the app: settings, database, extensions, pages, protocol, CLI."""
    try:
        startup.init_app(app)
    except startup.ConfigurationError as err:
        startup.refuse_to_start(app, err)
    signed_cookie.init_app(app)
    try:
        schema.init_app(app)
    except startup.ConfigurationError as err:  # engine options create_engine does not take; no folder for the default database
        startup.refuse_to_start(app, err)
    headers.init_app(app)
    csrf.init_app(app)
    try:
        limiter.init_app(app)
    except LimitsConfigurationError as err:  # a store whose package is missing (memcached://, mongodb://)
        startup.refuse_to_start(app, startup.ConfigurationError(f"RATELIMIT_STORAGE_URI cannot be used: {err}"))
    except StoreUnreachableAtStart as err:
        startup.refuse_to_start(app, startup.ConfigurationError(
            f"RATELIMIT_STORAGE_URI: no node of the Redis Cluster answered at start ({err}); a cluster store must be "
            "reachable when the server or a command starts"))
    mail.init_app(app)
    login_session.init_app(app)
    oauth2.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    cli.init_app(app)
    logout_delivery.init_app(app)
    wsgi.wrap(app)  # the WSGI layers, in the order identity/plumbing/wsgi.py gives
    schema.check_schema_on_start(app)
