"""Flask-Login wiring: the cookie holds a session id (sid) that the database can revoke.

The sid stays between the browser and this server; tokens name the session by its public id.
"""

import secrets
from datetime import timedelta
from types import SimpleNamespace

from flask import Flask, current_app, request, session
from flask_login import current_user, login_user, logout_user

from ..clock import now
from ..errors import answered_if_user_removed
from ..extensions import login_manager
from ..models import User
from ..services import accounts, logout, browser_sessions
from ..services.accounts import SignInResult


class SignedIn:
    """The signed-in person as Flask-Login sees them: a user plus the browser session."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, user: "User | browser_sessions.SessionUser", sid: str, auth_time: int, public_sid: str,
                 amr: str = "pwd"):
        self.user = user
        self.sid = sid  # the cookie's secret identifier
        self.auth_time = auth_time
        self.public_sid = public_sid  # the `sid` of tokens issued in this session
        self.amr = amr  # how the person signed in (RFC 8176 names, space-separated): the tokens' amr

    def get_id(self) -> str:
        return self.sid


#: an account page's signed-in user removed after the session was loaded: signed out, sent to sign in
signed_out_if_removed = answered_if_user_removed(login_manager.unauthorized)


@login_manager.user_loader
def _load(sid: str):
    found = browser_sessions.load_session(sid)  # None also when the session is idle or too old: sign in again
    return SignedIn(found.user, sid, found.auth_time, found.public_sid, found.amr) if found else None


def _leave_browser_session(user_id: int) -> str | None:
    """Before a sign-in of `user_id` (or its second step) takes this browser's cookie session:
    end the browser's live session if another user holds it (it would otherwise stay live, its
    remember-me cookie able to bring it back, its clients never told), then clear the cookie
    session and mark the remember-me cookie for deletion (login_user sets it again if asked).
    The cookie sid of the browser's live session when `user_id` holds it: the sign-in continues it."""
    continued, pending, ended = None, pending_second_factor(), None
    if current_user.is_authenticated:
        if current_user.user.id != user_id:
            ended = browser_sessions.end_session(current_user.sid, audited_for=current_user.user.id,
                                                 how="another_user_signed_in")
        else:
            continued = current_user.sid
    elif pending and pending.get("user") == user_id and isinstance(pending.get("continues"), str):
        continued = pending["continues"]  # the session the password step left, for the second step
    elif pending:
        ended = _end_continued(pending, "another_user_signed_in")  # as the live session of another user is
        _abandon(pending)
    elif (isinstance(sid := session.get("_user_id"), str)  # a session the previous release started (rolling update)
          and (holder := browser_sessions.previous_release_session_user(sid)) is not None):
        if holder == user_id and browser_sessions.adopt_previous_release_session(sid, user_id):
            continued = sid  # the same user signing in again continues it, as one of this release's
        elif holder != user_id:
            ended = browser_sessions.end_previous_release_session(sid, "another_user_signed_in")
    untold = _untold_sessions() + ([[ended.public_sid, ended.client_ids]]
                                   if logout.frontchannel_logout_uris(ended) else [])
    session.clear()
    logout_user()
    if untold:  # carried past a second step, to the page that ends the sign-in (untold_frontchannel_uris)
        session[UNTOLD_KEY] = untold
    return continued


# The browser sessions another user's sign-in ended here whose front-channel logout clients the
# browser has not framed yet: [public sid, client ids] pairs (ids, not URIs: the cookie stays small).
UNTOLD_KEY = "frontchannel_untold"


def _untold_sessions() -> list:
    untold = session.get(UNTOLD_KEY)
    return [pair for pair in untold if isinstance(pair, list) and len(pair) == 2] if isinstance(untold, list) else []


def untold_frontchannel_uris() -> list[str]:
    """The front-channel logout URIs of the sessions that this browser's sign-in of another user
    ended (Front-Channel Logout 1.0: the apps the first user is signed in to in this browser), once:
    the page that ends the sign-in frames them, as the signed-out page does a sign-out's."""
    uris = []
    for public_sid, client_ids in _untold_sessions():
        uris += logout.frontchannel_logout_uris(logout.EndedSession(public_sid, list(client_ids)))
    session.pop(UNTOLD_KEY, None)
    return uris


def sign_in(result: SignInResult, *, remember: bool = False, by_email: bool = False) -> SignedIn:
    """Carry a started sign-in (accounts.sign_in, finish_sign_in) in a fresh cookie session, so a
    planted one is useless (and a half-signed-in state is gone). The same user signing in again
    keeps the public sid of the session this browser had (browser_sessions.continue_session).
    `by_email`: the person typed their address, not their user name (account_login_name)."""
    continued = _leave_browser_session(result.user.id)
    public_sid = result.public_sid
    if continued:
        public_sid = browser_sessions.continue_session(continued, result.sid, result.user.id) or public_sid
    principal = SignedIn(result.user, result.sid, result.auth_time, public_sid, result.amr)
    login_user(principal, remember=remember)
    if by_email:
        session[BY_EMAIL_KEY] = True
    return principal


# The browser's sign-in named the user by email address: a password manager saved the login under
# it, and matches a form's user name to its saved logins by value, so the pages that set a password
# name the account by the address (account_login_name). A flag, not the address: the cookie is
# signed, not encrypted.
BY_EMAIL_KEY = "by_email"


def account_login_name(user: "User | browser_sessions.SessionUser") -> str:
    """The name this browser signed the user in with, as a password manager saved it: the address
    when the sign-in named it, else the user name (also after a passkey or a remembered session)."""
    if session.get(BY_EMAIL_KEY) is True and user.email:
        return user.email
    return user.username


def renew_cookie(principal: SignedIn, sid: str) -> SignedIn:
    """The browser's session now has the cookie sid `sid` (accounts.change_password renewed it):
    the session cookie, and the remember-me cookie if the browser has one, carry it from this
    response on, so copies of the old cookies sign nobody in."""
    renewed = SignedIn(principal.user, sid, principal.auth_time, principal.public_sid, principal.amr)
    remember = current_app.config["REMEMBER_COOKIE_NAME"] in request.cookies
    # the renewed remember-me cookie expires with the session (its absolute end), not a full duration from now
    duration = timedelta(seconds=browser_sessions.remember_seconds(sid, principal.user.id)) if remember else None
    login_user(renewed, remember=remember, duration=duration)
    return renewed


# The half-signed-in state between a right password and the second step: in the signed cookie
# (no flask-login user, no sessions row), so nothing that needs a session accepts it. It names
# the user, their password version (a change since ends it), when it began
# (accounts.pending_user ends it after MFA_PENDING_SECONDS), and a random id that the second
# step which finishes it spends in the database: a copy of the cookie taken before cannot
# finish a second sign-in without the password.
PENDING_KEY = "mfa_pending"


def hold_for_second_factor(result: SignInResult, *, remember: bool = False, by_email: bool = False) -> None:
    """Remember a right password until the second step (accounts.finish_sign_in) or its expiry."""
    continued = _leave_browser_session(result.user.id)
    session[PENDING_KEY] = {"user": result.user.id, "version": result.user.password_version, "at": now(),
                            "id": secrets.token_urlsafe(16), "remember": bool(remember), "amr": result.amr,
                            "continues": continued, "by_email": bool(by_email)}


def pending_second_factor() -> dict | None:
    """The half-signed-in state of this browser, if any (not yet checked for expiry or use)."""
    pending = session.get(PENDING_KEY)
    return pending if isinstance(pending, dict) and isinstance(pending.get("id"), str) else None


def pending_sign_in() -> "tuple[dict, browser_sessions.SessionUser] | None":
    """The half-signed-in state of this browser and its user, while it may still be finished
    (accounts.pending_user: not expired, not finished already, the password unchanged)."""
    pending = pending_second_factor()
    user = accounts.pending_user(pending["user"], pending["version"], pending["at"], pending["id"]) if pending else None
    return (pending, user) if user is not None else None


def continues_session() -> bool:
    """Whether this browser is half-way through signing in again: its second step would continue
    a live session, which a sign-out ends (so the end-session endpoint asks first, as it asks a
    signed-in person)."""
    pending = pending_second_factor()
    return pending is not None and isinstance(pending.get("continues"), str)


def drop_pending() -> None:
    """Forget a half-signed-in state that can no longer be finished (expired, finished, or its
    password changed), and end the session its second step would have continued: no cookie of
    this browser holds that one any more, so it would stay live, its clients never told."""
    pending = pending_second_factor()
    session.pop(PENDING_KEY, None)
    if pending:
        _end_continued(pending, "sign_in_not_finished")


def _end_continued(pending: dict, how: str | None):
    """End the browser session that a half-signed-in state (the same user signing in again) would
    continue, if any (a session ended already, or handed over to the finished sign-in, is left);
    audited as `session_ended` with reason `how` (None: the caller records it). As end_session."""
    continues, user_id = pending.get("continues"), pending.get("user")
    if not (isinstance(continues, str) and isinstance(user_id, int)):
        return None
    return browser_sessions.end_session(continues, audited_for=user_id if how is not None else None, how=how or "")


def _abandon(pending: dict) -> None:
    """Spend the id of a half-signed-in state given up (accounts.abandon_pending)."""
    if isinstance(pending.get("user"), int):
        accounts.abandon_pending(pending["user"], pending["id"])


class _PreviousReleaseSession:
    """The person of a session the previous release started (a rolling update), as the end-session
    check sees a signed-in one: its user's subject and its public sid, nothing this release serves."""

    is_authenticated = True

    def __init__(self, public_sid: str, subject: str):
        self.public_sid = public_sid
        self.user = SimpleNamespace(subject=subject)


def end_session_principal():
    """Who an end-session request would sign out: the signed-in person, or the one of the live
    session the previous release started with this cookie's sid during a rolling update, which
    this release cannot load but sign_out ends; the endpoint asks them first, as it asks a
    signed-in person (RP-Initiated Logout 1.0 section 2)."""
    if current_user.is_authenticated or not isinstance(sid := session.get("_user_id"), str):
        return current_user
    found = browser_sessions.previous_release_session(sid)
    return _PreviousReleaseSession(*found) if found else current_user


def sign_out(principal, how: str | None = "signed_out") -> list[str]:
    """End the browser session (audited as `session_ended`, reason `how`; None: the caller records
    it); the front-channel logout URIs of the clients it had issued to. A browser half-way
    through signing in again ends the session its second step would have continued. The same
    sign-out sent twice at once (a double click, whose second answer is the page the browser
    shows) ends the session once, and both answers carry its clients' URIs: so does one whose
    cookie names a session another request has just ended (only the browser can load them)."""
    ended = None
    if getattr(principal, "is_authenticated", False):
        audited_for = principal.user.id if how is not None else None
        ended = browser_sessions.end_session(principal.sid, audited_for=audited_for, how=how or "")
        if ended is None:  # ended since this request loaded it (the sign-out sent twice at once)
            ended = browser_sessions.ended_meanwhile(principal.sid)
    elif (pending := pending_second_factor()) is not None:
        ended = _end_continued(pending, how)
        _abandon(pending)  # a copy of the cookie finishes no second step after the sign-out
    elif isinstance(sid := session.get("_user_id"), str):  # Flask-Login's: a session ended before this request loaded it
        # or one the previous release started during a rolling update, which this one cannot load
        ended = browser_sessions.ended_meanwhile(sid) or browser_sessions.end_previous_release_session(sid, how)
    untold = untold_frontchannel_uris()  # of a session another user's unfinished sign-in here ended
    session.clear()
    logout_user()  # after the clear: it marks the remember-me cookie for deletion in the session
    return logout.frontchannel_logout_uris(ended) + untold


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "account.login"
    login_manager.login_message = None
    login_manager.refresh_view = "account.login"  # a session restored from "remember me" signs in again first
    login_manager.needs_refresh_message = None
    login_manager.session_protection = None  # the sid is revocable server-side; "strong" breaks mobile NAT changes
