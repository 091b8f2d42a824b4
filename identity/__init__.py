"""The OpenID provider and the user accounts."""

from flask import Flask

from . import auth, body_limit, cli, cookie_session, database, headers, oauth2, settings
from .extensions import csrf, limiter
from .services import purge
from .web import errors, register_blueprints


def init_app(app: Flask) -> None:
    """Attach the provider to the app: settings, database, extensions, pages, protocol, CLI."""
    try:
        settings.init_app(app)
    except settings.ConfigurationError as err:
        settings.refuse_to_start(app, err)
    cookie_session.init_app(app)
    database.init_app(app)
    headers.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    auth.init_app(app)
    oauth2.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    cli.init_app(app)
    body_limit.init_app(app)  # outside CORS and the fast documents, inside the headers layer
    headers.wrap(app)  # around every response, even a refused one or a fast document: request id, headers, log
    purge.init_app(app)  # outside the headers layer: a pass after a response is not part of its logged time
    settings.trust_proxies(app)  # last, so every other layer sees the corrected request
    database.check_schema_on_start(app)
