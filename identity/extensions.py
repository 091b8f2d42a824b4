"""Flask extensions, created unbound and attached in create_app."""

from flask import current_app, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager as _LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class LoginManager(_LoginManager):
    def _update_remember_cookie(self, response):
        """Flask-Login's after-request step, skipped for an empty, unchanged session (every API
        call): it has nothing to do then, and reading the session would add `Vary: Cookie`."""
        if not session and not session.modified and not current_app.config.get("REMEMBER_COOKIE_REFRESH_EACH_REQUEST"):
            return response
        return super()._update_remember_cookie(response)


db = SQLAlchemy(model_class=Base)
# Flask-Migrate (which imports Alembic) is attached only for commands: database.attach_migrate
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],  # read per app, at request time
)
