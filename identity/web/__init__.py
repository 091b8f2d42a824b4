"""Server-rendered pages, the protocol endpoints and discovery."""

from flask import Flask

from . import account, connect, consent, cors, discovery, fast_documents, grants, home, inputs, ops


def register_blueprints(app: Flask) -> None:
    for module in (discovery, home, ops, account, consent, grants, connect):
        app.register_blueprint(module.bp)
    cors.init_app(app)
    fast_documents.init_app(app)
    inputs.init_app(app)
