"""The operator's switches on a user: disable, enable, unlock.

A disabled user cannot sign in (answered as a wrong password: accounts.py), and what they hold
stops working at once on every worker: their sessions, refresh tokens and unused codes are
revoked as a password change revokes them, their access tokens fail the bearer check (it reads
only enabled users: store/tokens.py), and, as after a password change, the command returns only
once no worker can still accept one from memory (bearer_cache.wait_out_cached_answers).
Enabling lets them sign in again; nothing revoked comes back: a disable also moves the user's
password version on, as a password change does, so the access tokens (and half-finished
sign-ins) from before it stay refused once the user is enabled again.
"""

from dataclasses import dataclass

from ..clock import now
from ..errors import NotFound
from ..extensions import db
from ..models import User
from ..store import accounts as user_rows
from . import account_tokens, audit, bearer_cache
from .accounts import existing_user, revoke_grants_and_sessions


@dataclass
class StatusChange:
    username: str
    changed: bool  # False: it was already so (nothing written, nothing audited)


def _user(username: str) -> User:
    """The user, their row locked until the commit and read again under the lock: the same switch
    run twice at once (two terminals, a retried script) then changes and audits it once, and the
    second says it was already so."""
    user = existing_user(username)
    user_rows.lock_user_row(user.id)
    # by its id, not by refreshing the object found: a `users remove` committed since leaves no row
    user = db.session.get(User, user.id, populate_existing=True)
    if user is None:
        db.session.rollback()
        raise NotFound(f"no user {username!r}")
    return user


def apply_enabled(user: User, enabled: bool) -> bool:
    """Set a user's switch in the caller's transaction (revoking what a disabled user holds), audited;
    True if it changed. The caller commits, then waits out cached answers if it disabled."""
    if user.enabled == enabled:
        return False
    user.enabled = enabled
    user.disabled_at = None if enabled else now()
    if not enabled:
        user.password_version = user.password_version + 1
        revoke_grants_and_sessions(user, None, reason="user_disabled")
        account_tokens.supersede(user.id, account_tokens.PASSWORD_RESET)  # a pending reset link too
        # and a pending address change: its link would choose where reset links go once enabled
        account_tokens.supersede(user.id, account_tokens.VERIFY_EMAIL)
        user.pending_email = None
    audit.record("user_enabled" if enabled else "user_disabled", user_id=user.id, detail={"username": user.username})
    return True


def disable_user(username: str) -> StatusChange:
    """Disable a user: no sign-in, and their sessions and tokens refused everywhere when this returns."""
    user = _user(username)
    user_id, name = user.id, user.username
    changed = apply_enabled(user, False)
    db.session.commit()
    if changed:
        bearer_cache.wait_out_cached_answers(user_id)
    return StatusChange(name, changed)


def enable_user(username: str) -> StatusChange:
    """Let a disabled user sign in again."""
    user = _user(username)
    name = user.username  # read now: after the commit, a `users remove` may have left no row to read it from
    changed = apply_enabled(user, True)
    db.session.commit()
    return StatusChange(name, changed)


def unlock_user(username: str) -> StatusChange:
    """Clear a user's lockout: the failure count and any lock (nothing written or audited if neither
    is set: the row's lock, taken to read them, ends at once)."""
    user = _user(username)
    name = user.username  # read now: after the commit, a `users remove` may have left no row to read it from
    was_locked = user.locked_until > now()
    changed = bool(user.failed_attempts or user.locked_until)
    if changed:
        user.failed_attempts, user.locked_until = 0, 0
        audit.record("user_unlocked", user_id=user.id, detail={"username": name, "was_locked": was_locked})
        db.session.commit()
    else:
        db.session.rollback()
    return StatusChange(name, changed)
