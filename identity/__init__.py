"""The OpenID provider and the user accounts."""

from flask import Flask

from . import auth, cli, database, headers, oauth2, settings
from .extensions import csrf, limiter
from .web import errors, register_blueprints


def init_app(app: Flask) -> None:
    """Attach the provider to the app: settings, database, extensions, pages, protocol, CLI."""
    settings.init_app(app)
    database.init_app(app)
    headers.init_app(app)  # first: every response, even a refused one, gets its request id and headers
    csrf.init_app(app)
    limiter.init_app(app)
    auth.init_app(app)
    oauth2.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    cli.init_app(app)
    settings.trust_proxies(app)  # last, so every other layer sees the corrected request
    database.check_schema_on_start(app)
