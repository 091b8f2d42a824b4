"""Flask-Login wiring: the cookie holds a session id (sid) that the database can revoke."""

from flask import Flask, session
from flask_login import login_user, logout_user

from .extensions import login_manager
from .models import User, UserSession
from .services import sessions


class SignedIn:
    """The signed-in person as Flask-Login sees them: a user plus the browser session."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, session_row: UserSession, user: User):
        self.session = session_row
        self.user = user

    def get_id(self) -> str:
        return self.session.sid

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def auth_time(self) -> int:
        return self.session.auth_time


@login_manager.user_loader
def _load(sid: str):
    found = sessions.load_session(sid)
    return SignedIn(*found) if found else None


def sign_in(user: User, *, remember: bool = False) -> SignedIn:
    """Start a fresh session: a new cookie session and a new sid, so a planted one is useless."""
    session.clear()
    row = sessions.start_session(user)
    principal = SignedIn(row, user)
    login_user(principal, remember=remember)
    return principal


def sign_out(principal) -> None:
    if getattr(principal, "is_authenticated", False):
        sessions.end_session(principal.sid)
    logout_user()
    session.clear()


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "account.login"
    login_manager.login_message = None
    login_manager.refresh_view = "account.login"  # a session restored from "remember me" signs in again first
    login_manager.needs_refresh_message = None
    login_manager.session_protection = None  # the sid is revocable server-side; "strong" breaks mobile NAT changes
