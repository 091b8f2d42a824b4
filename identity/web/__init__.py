"""Server-rendered pages, the protocol endpoints and discovery."""

from flask import Flask

from . import (account, caller, connect, consent, discovery, email, grants, home, inputs, mfa, ops, passkeys, recovery,
               registration, sessions)


def register_blueprints(app: Flask) -> None:
    """The pages and endpoints (their WSGI layers are put around the app in identity/wsgi.py)."""
    for module in (discovery, home, ops, account, recovery, email, mfa, passkeys, consent, grants, sessions, connect):
        app.register_blueprint(module.bp)
    if app.config["REGISTRATION_ENABLED"]:  # off, /account/register does not exist (404 to every method)
        app.register_blueprint(registration.bp)
    inputs.init_app(app)
    caller.init_app(app)
