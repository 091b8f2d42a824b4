"""Server-rendered pages and the discovery endpoints."""

from flask import Flask

from . import discovery, home, ops


def register_blueprints(app: Flask) -> None:
    for module in (discovery, home, ops):
        app.register_blueprint(module.bp)
