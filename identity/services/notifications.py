"""Security notices by mail: what happened to the account, when, and through which client.

A notice carries no link at all (nothing in it signs anyone in, nothing in it is worth
phishing for): it points the reader to the sign-in page's "Forgot your password?" instead. It
goes after the change has committed; a notice that cannot be sent is logged and audited
(services/mail.py) and changes nothing else.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app

from ..clock import now
from ..extensions import db
from ..models import User
from . import account_tokens, audit, clients, mail

# how a password came to change, in the notice's words
CHANGED_BY_USER = "by you, with your current password"
RESET_BY_LINK = "with a reset link sent to this address"
SET_BY_OPERATOR = "by an administrator"

# which sign-in method was added or removed, in the notice's words
AUTHENTICATOR_ADDED = "An authenticator app was set up for two-step sign-in"
RECOVERY_CODES_REPLACED = "New recovery codes were made (the earlier ones no longer work)"
AUTHENTICATOR_REMOVED = "The authenticator app and its recovery codes were removed"
PASSKEY_ADDED = "A passkey was added"
PASSKEY_REMOVED = "A passkey was removed"


def now_text() -> str:
    """Now, as a notice says it (UTC, to the minute)."""
    return datetime.fromtimestamp(now(), tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _client_name(client_id: str | None) -> str | None:
    if not client_id:
        return None
    client = clients.cached_client(client_id)  # the worker's snapshot: the name, not a query
    return client.client_name if client is not None else client_id


@dataclass(frozen=True)
class Addressee:
    """Whom a notice goes to, read from the user's row before the commit that changes it: read
    after, every attribute of the row would be loaded again."""

    user_id: int
    email: str | None
    name: str
    username: str
    verified: bool = True


def addressee(user: User) -> Addressee:
    return Addressee(user.id, user.email, user.name or user.username, user.username, bool(user.email_verified))


def _may_tell(user_id: int, verified: bool, template: str) -> bool:
    """Whether a notice of something the account's holder did may go to its address: always to a
    verified one; to one nobody has verified (self-registration takes any address typed) at most
    EMAIL_VERIFICATION_MAILS_PER_HOUR of each kind (`template`) in an hour, counted in the
    database and committed: a kind has its own share, so notices of one (password changes) spent
    do not silence another (a passkey added, which signs in alone and outlives a reset). The
    user's row is not locked for it (a password change reads it once, locked, for the change):
    notices of changes committed at the same moment may each find one share left, which bounds
    them by the requests in flight, not by nothing. Without it, one registration
    with someone else's address gave an account whose every password change, or passkey or
    authenticator app added and removed, mailed that address."""
    if verified:
        return True
    stamp, purpose = now(), account_tokens.UNVERIFIED_NOTICE + template
    if account_tokens.issued_since(user_id, purpose, stamp - 3600) >= current_app.config["EMAIL_VERIFICATION_MAILS_PER_HOUR"]:
        db.session.rollback()
        return False
    account_tokens.spend_once(user_id, purpose, secrets.token_urlsafe(16), stamp + 3600)
    db.session.commit()
    return True


def password_changed(to: Addressee, *, how: str, client_id: str | None = None) -> None:
    """Tell the user their password changed (if they have an address; one they changed themselves
    to an address nobody has verified, within its hourly share: _may_tell)."""
    if not to.email:
        return
    if how == CHANGED_BY_USER and not _may_tell(to.user_id, to.verified, "password_changed"):
        return
    when = now_text()
    mail.send_later(to.email, "password_changed", user_id=to.user_id, name=to.name, username=to.username,
                    when=when, how=how, client_name=_client_name(client_id), ip=audit.caller_ip.get())


def masked_address(address: str) -> str:
    """a***@example.com: enough for the owner to recognise, not a full address for whoever reads the mail."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class AddressChange:
    """An account's address of record changed by the operator (a seed), read before the commit."""

    user_id: int
    old_email: str | None
    new_email: str | None
    name: str
    username: str


def address_changed_by_operator(change: AddressChange) -> None:
    """Tell the old and the new address that the operator changed the account's address (as the
    verification link's change tells both): the address receives the reset links, so its owner
    must hear of a change made without them (OWASP ASVS 4.0.3, 2.2.3 and 2.5.5)."""
    if not change.new_email:  # an address removed: the old one is told, with no new one to name
        recipients = [change.old_email] if change.old_email else []
    else:
        recipients = [a for a in (change.old_email, change.new_email) if a]
    for recipient in recipients:
        mail.send_later(recipient, "email_changed", user_id=change.user_id, username=change.username, name=change.name,
                        old_email=masked_address(change.old_email) if change.old_email else None,
                        new_email=masked_address(change.new_email) if change.new_email else None,
                        when=now_text(), how=SET_BY_OPERATOR)


def second_factors_removed(to: Addressee) -> None:
    """Tell the user an operator removed their second factors (`users mfa-reset`), if they have an address."""
    if not to.email:
        return
    when = now_text()
    mail.send_later(to.email, "second_factors_removed", user_id=to.user_id, name=to.name, username=to.username,
                    when=when)


def sign_in_method_changed(user_id: int, what: str) -> None:
    """Tell the user a sign-in method was added to or removed from their account (if they have an
    address), once that has committed. Whoever added a passkey signs in with it, a password reset
    notwithstanding: the owner must hear of it (NIST SP 800-63B, section 4.6). The passkey's name
    is not in it: it is the adder's words."""
    user = db.session.get(User, user_id)
    if user is None or not user.email:
        return
    to = addressee(user)  # read before _may_tell's commit, which would have the row loaded again
    if not _may_tell(user_id, to.verified, "sign_in_method_changed"):
        return
    mail.send_later(to.email, "sign_in_method_changed", user_id=user_id, name=to.name, username=to.username,
                    when=now_text(), what=what, ip=audit.caller_ip.get())


def code_used_again(user_id: int) -> None:
    """Tell the user a code of their authenticator app, accepted once already, was entered again
    and refused (if they have an address), once the refusal has committed: whoever entered it
    knows the password and saw a code (OWASP ASVS 4.0.3, 2.8.5)."""
    user = db.session.get(User, user_id)
    if user is None or not user.email:
        return
    to = addressee(user)  # read before _may_tell's commit, which would have the row loaded again
    if not _may_tell(user_id, to.verified, "code_used_again"):
        return
    mail.send_later(to.email, "code_used_again", user_id=user_id, name=to.name, username=to.username,
                    when=now_text(), ip=audit.caller_ip.get())
