"""The application factory: `flask --app app run`, `gunicorn 'app:create_app()'`."""

from flask import Flask

import api
import identity
from identity.plumbing.application import IdentityFlask


def create_app(config: dict | None = None) -> Flask:
    """Load settings (defaults, instance/config.py, FLASK_* environment, `config`), then attach each part."""
    app = IdentityFlask(__name__, instance_relative_config=True)
    app.config.from_object("identity.config.defaults")
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    identity.init_app(app)
    api.init_app(app)
    return app
