"""The /localapi blueprint: the identity server's own API, for bearer tokens with scope IdentityServerApi."""

from flask import Flask

from identity.plumbing import error_renderers
from identity.extensions import csrf

from . import problems, sessions  # noqa: F401  (sessions adds its routes to bp)
from .views import bp


def init_app(app: Flask) -> None:
    """Mount /localapi: bearer tokens only (no cookies, so no CSRF), problem+json errors."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
    error_renderers.register(app, bp.url_prefix + "/", problems.render)
