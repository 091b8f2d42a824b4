"""Forgot password and reset: a one-time link by mail, then a new password set exactly as a
password change sets one (accounts.replace_password).

A request is answered the same way whether or not the account exists, has an address, or has
had its PASSWORD_RESET_MAILS_PER_HOUR already; so both sides do the same work here (a user
lookup, a token made and hashed, the hourly count, a mail rendered) and the mail itself leaves
from the sender thread (mail.send_later), after the response, so its SMTP round trip neither
slows nor reveals anything. Requesting a reset changes nothing on the account: it cannot lock
anyone out, and the hourly cap keeps it from mail-bombing them.
"""

from flask import current_app

from ..clock import now
from ..errors import AlreadyDone, InvalidLink, ValidationFailed
from ..extensions import db
from ..models import User
from ..store import accounts as user_rows
from . import account_tokens, accounts, audit, mail, metrics, notifications
from .password_policy import confirmed, normalize
from .passwords import verify_password

RESET_PATH = "/account/reset-password"
HOUR = 3600
PURPOSE = account_tokens.PASSWORD_RESET
NOBODY = 0  # no user has this id: the unknown account's count finds nothing, at the same cost


# the forgot-password form's one-time value, spent by the request that mails a link (account_tokens.spend_once)
FORM_PURPOSE = "reset_form"


def account_key(login: str) -> str:
    """What the per-account limit of forgot-password requests counts: the account the user name or
    address names (both name one account, however written), else the login as normalized. The
    same lookup for a known and an unknown login, as request_reset's."""
    user = accounts.find_user(login)
    return f"#{user.id}" if user is not None else accounts.normalize_login(login)[:320]


def request_reset(login: str, *, return_url: str | None = None, client_id: str | None = None,
                  form_id: str | None = None) -> None:
    """Mail a reset link to the account `login` names (user name or email), if it can have one.

    `form_id` is the page's value (web.forms.OncePageForm): the same form sent again (a double click, a
    browser's resend) finds it spent by the copy that mailed the link, and is answered the same
    way with no second link, which would end the first one mailed (outcome `sent_again`)."""
    cfg = current_app.config
    user = accounts.find_user(login)
    owner = user.id if user is not None else NOBODY
    # requests naming one account take turns from here to the commit, so each counts the links
    # of those before it: the hourly budget holds for requests at once (the same statement, of
    # no row, for an unknown account)
    user_rows.lock_user_row(owner)
    # read again under the lock (of no row for an unknown account, as the lock): a change that
    # committed since find_user's read, such as a disable, is what the request is judged by
    user = db.session.get(User, owner, populate_existing=True)
    recent = account_tokens.issued_since(owner, PURPOSE, now() - HOUR)
    if user is None or not user.email or not user.enabled:
        outcome = "unknown_account" if user is None else "no_email" if not user.email else "disabled"
    elif recent >= cfg["PASSWORD_RESET_MAILS_PER_HOUR"]:
        outcome = "mail_limit"
    elif form_id and not account_tokens.spend_once(user.id, FORM_PURPOSE, form_id, now() + cfg["PASSWORD_RESET_SECONDS"]):
        outcome = "sent_again"
    else:
        outcome = "mailed"
    if outcome == "mailed":
        token = account_tokens.issue(user.id, PURPOSE, cfg["PASSWORD_RESET_SECONDS"], email=user.email)
        to, user_id, name, username = user.email, user.id, user.name or user.username, user.username
    else:  # the same work as a real link, but the row: a token made and hashed, an UPDATE of no row
        token, _ = account_tokens.new_token()
        account_tokens.supersede(NOBODY, PURPOSE)
        to, user_id, name, username = None, user.id if user else None, login, login
    audit.record("password_reset_requested", user_id=user_id, client_id=client_id, detail={"outcome": outcome})
    db.session.commit()
    query = {"token": token, **({"returnUrl": return_url} if return_url else {})}
    context = dict(link=mail.link(RESET_PATH, **query), lifetime=mail.lifetime_text(cfg["PASSWORD_RESET_SECONDS"]))
    if to is not None:
        mail.send_later(to, "password_reset", user_id=user_id, name=name, username=username, **context)
    else:
        mail.render("nobody@invalid", "password_reset", name=name, username=username, **context)  # and dropped


def _refused(reason: str, *, user_id: int | None = None, client_id: str | None = None) -> InvalidLink:
    audit.record("password_reset_failed", user_id=user_id, client_id=client_id, detail={"reason": reason})
    db.session.commit()
    return InvalidLink(reason)


def _for_current_address(row, user: User) -> bool:
    """Whether the link was mailed to the address the account has now: one left in a mailbox the
    account has moved away from (perhaps because that mailbox was lost) opens nothing."""
    return row.email is not None and user.email_normalized == accounts.normalize_login(row.email)


def _unusable_for(row, user: User) -> str | None:
    """Why a usable link cannot reset this account's password now, or None: mailed to an address
    the account no longer has ("superseded"), or the operator disabled the account since
    ("disabled": whoever holds the link would choose the password it has when enabled again)."""
    if not _for_current_address(row, user):
        return "superseded"
    return None if user.enabled else "disabled"


def check_link(token: str | None, *, client_id: str | None = None, audit_refusal: bool = True) -> str:
    """Raise InvalidLink (audited, unless `audit_refusal` is false: a HEAD, a scanner's, which is
    safe) unless `token` is a reset link that works now; return the user name of its account (the
    page names it for password managers)."""
    checked = account_tokens.check(token, PURPOSE)
    user = db.session.get(User, checked.row.user_id) if checked.row is not None else None
    owner = user.id if user is not None else None  # whose link a refusal is audited for
    if checked.row is None:
        reason = checked.reason
        owner = account_tokens.disabled_owner(token, PURPOSE) if reason == "used" else None
        if owner is not None:
            reason = "disabled"
    elif user is None:  # removed between the two reads (its links go with it)
        reason = "unknown"
    else:
        reason = _unusable_for(checked.row, user)
    if reason is not None:
        if not audit_refusal:
            db.session.rollback()  # end the read
            raise InvalidLink(reason)
        raise _refused(reason, user_id=owner, client_id=client_id)
    username = user.username
    db.session.rollback()  # end the read
    return username


def _sent_again(token: str | None, new_password: str, confirm_password: str) -> bool:
    """Whether a post with a used link is the reset form sent again (a double click, a browser's
    resend) after its first copy set the password moments ago: the link was used within
    accounts.SENT_AGAIN_SECONDS, and the account's password, set since, is the one this post asks
    for. Whoever sends it holds the link and knows that password, so the answer tells them nothing."""
    row = account_tokens.find(token, PURPOSE)
    if row is None or row.used_at is None or now() - row.used_at > accounts.SENT_AGAIN_SECONDS:
        return False
    user = db.session.get(User, row.user_id, populate_existing=True)
    sent_again = (user is not None and _unusable_for(row, user) is None
                  and confirmed(new_password, confirm_password)
                  and user.password_changed_at >= row.used_at
                  and verify_password(user.password_hash, normalize(new_password)))
    db.session.rollback()  # end the read
    return sent_again


def _usable_user(row, client_id: str | None, *, locked: bool) -> User:
    """The link's user, read (`locked`: and its row locked until the commit, accounts.locked_user);
    refused (rolled back) when gone or when the link no longer applies to it (_unusable_for)."""
    user = (db.session.scalar(accounts.locked_user(row.user_id)) if locked
            else db.session.get(User, row.user_id, populate_existing=True))
    if user is None:  # removed since the link was sent (the row cascades; a race)
        db.session.rollback()
        raise _refused("unknown", client_id=client_id)
    reason = _unusable_for(row, user)
    if reason is not None:
        db.session.rollback()
        raise _refused(reason, user_id=user.id, client_id=client_id)
    return user


def reset_password(token: str | None, new_password: str, confirm_password: str, *,
                   client_id: str | None = None) -> User:
    """Set a new password through a reset link, in one transaction with the link's use.

    An unusable link raises InvalidLink; a password the policy refuses raises ValidationFailed
    and leaves the link usable (until it expires), so the person can try another. The same form
    sent again after its first copy used the link raises AlreadyDone (`_sent_again`).
    """
    checked = account_tokens.check(token, PURPOSE)
    if checked.row is None:
        disabled = account_tokens.disabled_owner(token, PURPOSE) if checked.reason == "used" else None
        if disabled is not None:
            raise _refused("disabled", user_id=disabled, client_id=client_id)
        if checked.reason == "used" and _sent_again(token, new_password, confirm_password):
            raise AlreadyDone()
        raise _refused(checked.reason, client_id=client_id)
    user = _usable_user(checked.row, client_id, locked=False)
    try:
        # judged and hashed before the user's row is locked and before the link's use, the
        # transaction's first write: the hash (24 ms) must hold neither SQLite's one write lock
        # nor, on PostgreSQL, the user's row, which the user's other requests write (the local
        # API's lease, a sign-in's lockout counter) and would wait out the hash for
        password_hash = accounts.judged_password_hash(user, new_password, confirm_password)
    except ValidationFailed:
        db.session.rollback()  # the link stays usable
        audit.record("password_reset_failed", user_id=checked.row.user_id, client_id=client_id,
                     detail={"reason": "password_refused"})
        db.session.commit()
        raise
    user = _usable_user(checked.row, client_id, locked=True)  # as it is now, kept so until the commit
    if not account_tokens.consume(checked.row):  # another request used it first
        db.session.rollback()
        if _sent_again(token, new_password, confirm_password):
            raise AlreadyDone()
        raise _refused("used", user_id=checked.row.user_id, client_id=client_id)
    accounts.replace_password(user, password_hash, event="password_reset", client_id=client_id)
    to = notifications.addressee(user)
    db.session.commit()
    metrics.count_password_change("reset")
    accounts.password_replaced(to, how=notifications.RESET_BY_LINK, client_id=client_id)
    return user
