"""Flask extensions, created unbound and attached in create_app."""

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
# Flask-Migrate (which imports Alembic) is attached only for commands: database.attach_migrate
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],  # read per app, at request time
)
