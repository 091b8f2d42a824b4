"""Server-rendered pages, the protocol endpoints and discovery."""

from flask import Flask

from . import account, caller, connect, consent, discovery, email, grants, home, inputs, ops, registration


def register_blueprints(app: Flask) -> None:
    """The pages and endpoints (their WSGI layers are put around the app in identity/wsgi.py)."""
    for module in (discovery, home, ops, account, registration, email, consent, grants, connect):
        app.register_blueprint(module.bp)
    inputs.init_app(app)
    caller.init_app(app)
