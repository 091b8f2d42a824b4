"""Server-rendered pages, the protocol endpoints and discovery."""

from flask import Flask

from . import (
    account,
    caller,
    connect,
    consent,
    discovery,
    email,
    connected_apps,
    home,
    inputs,
    mfa,
    ops,
    passkeys,
    recovery,
    registration,
    devices,
)


def register_blueprints(app: Flask) -> None:
    """The pages and endpoints (their WSGI layers are put around the app in identity/plumbing/wsgi.py)."""
    for module in (discovery, home, ops, account, recovery, email, mfa, passkeys, consent, connected_apps, devices, connect):
        app.register_blueprint(module.bp)
    if app.config["REGISTRATION_ENABLED"]:  # off, /account/register does not exist (404 to every method)
        app.register_blueprint(registration.bp)
    inputs.init_app(app)
    caller.init_app(app)
