"""The OpenID provider and the user accounts."""

from flask import Flask

from . import auth, cli, cookie_session, database, headers, oauth2, settings, wsgi
from .extensions import csrf, limiter
from .services import mail
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
    mail.init_app(app)
    auth.init_app(app)
    oauth2.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    cli.init_app(app)
    wsgi.wrap(app)  # the WSGI layers, in the order identity/wsgi.py gives
    database.check_schema_on_start(app)
