"""Flask-Login wiring: the cookie holds a session id (sid) that the database can revoke.

The sid stays between the browser and this server; tokens name the session by its public id.
"""

from flask import Flask, session
from flask_login import login_user, logout_user

from .extensions import login_manager
from .models import User
from .services import logout, sessions
from .services.accounts import SignInResult


class SignedIn:
    """The signed-in person as Flask-Login sees them: a user plus the browser session."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, user: "User | sessions.SessionUser", sid: str, auth_time: int, public_sid: str):
        self.user = user
        self.sid = sid  # the cookie's secret identifier
        self.auth_time = auth_time
        self.public_sid = public_sid  # the `sid` of tokens issued in this session

    def get_id(self) -> str:
        return self.sid


@login_manager.user_loader
def _load(sid: str):
    found = sessions.load_session(sid)  # None also when the session is idle or too old: sign in again
    return SignedIn(found.user, sid, found.auth_time, found.public_sid) if found else None


def sign_in(result: SignInResult, *, remember: bool = False) -> SignedIn:
    """Carry a started sign-in (accounts.sign_in) in a fresh cookie session, so a planted one is useless."""
    session.clear()
    principal = SignedIn(result.user, result.sid, result.auth_time, result.public_sid)
    login_user(principal, remember=remember)
    return principal


def sign_out(principal) -> list[str]:
    """End the browser session; the front-channel logout URIs of the clients it had issued to."""
    ended = sessions.end_session(principal.sid) if getattr(principal, "is_authenticated", False) else None
    logout_user()
    session.clear()
    return logout.frontchannel_logout_uris(ended)


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "account.login"
    login_manager.login_message = None
    login_manager.refresh_view = "account.login"  # a session restored from "remember me" signs in again first
    login_manager.needs_refresh_message = None
    login_manager.session_protection = None  # the sid is revocable server-side; "strong" breaks mobile NAT changes
