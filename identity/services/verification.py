"""Verified email addresses: the link that proves an address is the user's, and the address change.

An address counts as verified only once a link mailed to it is followed (or an operator vouches
for it: the seed's `email_verified`, `users add --email-verified`). A new address waits in
`pending_email` and replaces the current one only when its own link is followed, so a typo or a
stolen session cannot move the account to an address its owner does not read. The links are
one-time account tokens (account_tokens.py) of purpose VERIFY_EMAIL, each bound to the address
it was sent to: a link for an address the user no longer has or asks for does nothing.

Mails leave from the sender thread (mail.send_later) after the commit, so no answer waits for, or
reveals, the SMTP round trip.
"""

from dataclasses import dataclass
from email.utils import parseaddr

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..errors import AccountLocked, NotFound, ValidationFailed
from ..extensions import db
from ..models import User
from ..store import accounts as user_rows
from . import account_tokens, audit, bearer_cache, lockout, mail, mfa, notifications
from .accounts import SENT_AGAIN_SECONDS, code_required_now, find_user, normalize_login, refuse_changed_meanwhile
from .clients import cached_client
from .login_names import MAX_EMAIL_LENGTH, length_problem, mailbox_problem
from .password_policy import normalize
from .passwords import verify_password

VERIFY_PATH = "/account/verify-email"


class TooManyMails(Exception):
    """The account was sent EMAIL_VERIFICATION_MAILS_PER_HOUR links in the last hour already;
    `retry_after`: the seconds until one of them leaves the hour."""

    def __init__(self, retry_after: int):
        super().__init__("too many verification mails")
        self.retry_after = retry_after


class NothingToVerify(Exception):
    """The user has no address, or only a verified one and no pending change."""


def check_email_address(value: str | None) -> str | None:
    """An address's problem in one sentence, or None when it looks deliverable (a@b.c, one line).

    It must also be the mailbox that mail is sent to: the mail library reads the address first
    (email.utils.parseaddr), dropping a comment (`a(b)@example.com` goes to a@example.com) or a
    group's name (`a@example.com:x@example.net` goes to x@example.net). Such an address was
    stored, checked against other accounts and reported verified as written, while its links
    went to another mailbox. Then it must be one mail can reach as written (login_names.mailbox_problem:
    an ASCII part before the @, a domain whose IDNA form names the same domain)."""
    value = (value or "").strip()
    if not value:
        return "Enter an email address."
    too_long = length_problem(value, MAX_EMAIL_LENGTH)
    if too_long:
        return too_long
    local, at, domain = value.rpartition("@")
    if (not at or not local or "." not in domain.strip(".") or domain.startswith(".") or domain.endswith(".")
            or any(c.isspace() or c in "<>,;\"\\()" or ord(c) < 32 for c in value) or "@" in domain
            or parseaddr(value) != ("", value)):
        return "Enter an email address such as name@example.com."
    return mailbox_problem(value)


def address_to_verify(user: User) -> str | None:
    """The address a verification link would be for: the pending new one, else an unverified current one."""
    if user.pending_email:
        return user.pending_email
    if user.email and not user.email_verified:
        return user.email
    return None


def _check_mail_budget(user_id: int) -> None:
    """Refuse a link when the account had its hourly share (a mail-bomb guard, counted in the
    database). Called under the user's row lock (the caller's, held until its commit): requests
    at once take turns, each counting the links of those before it. A refusal ends the
    transaction (and the lock)."""
    limit = current_app.config["EMAIL_VERIFICATION_MAILS_PER_HOUR"]
    if account_tokens.issued_since(user_id, account_tokens.VERIFY_EMAIL, now() - 3600) >= limit:
        retry_after = account_tokens.seconds_until_fewer_than(user_id, account_tokens.VERIFY_EMAIL, limit, 3600)
        db.session.rollback()
        raise TooManyMails(retry_after)


def _issue_link(user: User, address: str) -> str:
    """A new verification token for `address` (superseding the user's older links); the caller commits."""
    token = account_tokens.issue(user.id, account_tokens.VERIFY_EMAIL,
                                 current_app.config["EMAIL_VERIFICATION_SECONDS"], email=address)
    return mail.link(VERIFY_PATH, token=token)


def _spend_a_link(user: User, address: str) -> None:
    """Count a link in the hourly budget, as `_issue_link` does, and end it unsent: for an address
    of another account, whose requester must meet the budget as for a free one, and whose owner
    must not be mailed more often than that. The caller commits."""
    _issue_link(user, address)
    account_tokens.supersede(user.id, account_tokens.VERIFY_EMAIL)


def _client_name(client_id: str | None) -> str | None:
    client = cached_client(client_id) if client_id else None
    return client.client_name if client is not None else None


def _send_link(user_id: int, username: str, address: str, link: str, *, change: bool) -> None:
    lifetime = mail.lifetime_text(current_app.config["EMAIL_VERIFICATION_SECONDS"])
    # no display name: the address is not proved to be the user's, and the name is their free text
    mail.send_later(address, "verify_email", user_id=user_id, link=link, username=username,
                    change=change, lifetime=lifetime)


# "Send the link again"'s one-time value, spent by the request that mails (account_tokens.spend_once)
FORM_PURPOSE = "verify_form"


def send_verification(user_id: int, *, client_id: str | None = None, form_id: str | None = None) -> str:
    """Mail a verification link to the address that awaits one; return that address.

    Raises NothingToVerify when there is none, TooManyMails past the hourly budget. `form_id` is
    the page's value (web.forms.OncePageForm): the same form sent again (a double click, a browser's resend)
    finds it spent by the copy that mailed, and returns the address with no second link, which
    would end the first one mailed.
    """
    # requests for the user take turns from here to the commit (copies of the form among them),
    # and each judges the address as it is then: one changed since a read before the lock would
    # be mailed a link for an address no longer awaiting one
    user_rows.lock_user_row(user_id)
    user = db.session.get(User, user_id, populate_existing=True)
    address = address_to_verify(user) if user is not None else None
    if address is None:
        db.session.rollback()
        raise NotFound("no such user") if user is None else NothingToVerify()
    if form_id and not account_tokens.spend_once(user.id, FORM_PURPOSE, form_id,
                                                 now() + current_app.config["EMAIL_VERIFICATION_SECONDS"]):
        db.session.rollback()
        return address
    _check_mail_budget(user.id)
    if _owner_of(address, user) is not None:
        _spend_a_link(user, address)  # its owner was told when it was asked for: no more mail
        db.session.commit()
        return address
    link = _issue_link(user, address)
    audit.record("email_verification_sent", user_id=user.id, client_id=client_id)
    to = notifications.addressee(user)  # read after the commit, a `users remove` may have left no row
    db.session.commit()
    _send_link(to.user_id, to.username, address, link, change=address != to.email)
    return address


def link_for_new_user(user: User) -> str:
    """The first verification link of a user just added (registration); the caller commits, then mails it."""
    return _issue_link(user, user.email)


def send_new_user_link(user: User, link: str) -> None:
    _send_link(user.id, user.username, user.email, link, change=False)


def _owner_of(address: str, user: User) -> User | None:
    """Another account that has `address` (or, as sign-in reads it, has it as user name)."""
    owner = find_user(address)
    return owner if owner is not None and owner.id != user.id else None


def _change_sent_again(user_id: int, new_email: str) -> bool:
    """Whether this change is the same form sent again (a double click, a browser's resend) after
    its first copy asked for it moments ago: `new_email` is the pending address, and the newest
    verification link (mailed, or spent unsent for an address of another account) is for it and
    was made within accounts.SENT_AGAIN_SECONDS. Read under the user's row lock (the caller's)."""
    pending = db.session.scalar(select(User.pending_email).where(User.id == user_id))
    newest = account_tokens.newest(user_id, account_tokens.VERIFY_EMAIL)
    return (pending is not None and normalize_login(pending) == normalize_login(new_email)
            and newest is not None and normalize_login(newest[0] or "") == normalize_login(new_email)
            and now() - newest[1] <= SENT_AGAIN_SECONDS)


def request_email_change(user_id: int, new_email: str, current_password: str, *, client_id: str | None = None,
                         otp: str | None = None, recent_mfa: bool = False, form: bool = False) -> None:
    """Ask to change the address: check the password (through the lockout reservation, as a
    password change does), keep the new address pending, mail it a link and the current address
    a notice. The address changes only when the link is followed (`verify_email`).

    A user with a second factor also gives a code (`otp`) unless the caller's sign-in used one
    recently (`recent_mfa`), as for a password change (accounts.change_password): the address
    receives the reset links, so whoever changes it can set the password. Without one,
    SecondFactorRequired before the password is looked at; the code is spent only by a request
    that goes through.

    From the page (`form`), the same form sent again within SENT_AGAIN_SECONDS of its first copy
    (`_change_sent_again`: a double click, a browser's resend) returns as that one did, with
    nothing more mailed, audited or counted. (The local API counts each request as a link.)

    An address that belongs to another account is not refused (that would tell whose it is): it
    is kept as pending, the hourly budget is spent and the current address gets its notice as for
    any other, but no link goes to it, its owner gets a mail saying what happened instead, and it
    never applies.
    """
    problem = check_email_address(new_email)
    if problem:
        raise ValidationFailed({"email": [problem]})
    new_email = new_email.strip()
    code_required = mfa.code_required(user_id, otp, recent_mfa=recent_mfa)
    reservation = lockout.reserve(user_id)
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None:
        db.session.rollback()
        raise NotFound("no such user")
    if reservation is None:
        remaining = max(1, user.locked_until - now())
        db.session.rollback()
        # a password tried while locked is audited, as at sign-in and at a factor's removal
        audit.record("email_change_failed", user_id=user_id, client_id=client_id, detail={"reason": "locked"})
        db.session.commit()
        raise AccountLocked(remaining)
    if not verify_password(user.password_hash, normalize(current_password)):
        db.session.rollback()
        audit.record("email_change_failed", user_id=user_id, client_id=client_id, detail={"reason": "bad_password"})
        if lockout.commit_refusal(reservation):
            raise AccountLocked(current_app.config["LOCKOUT_SECONDS"])
        raise ValidationFailed({"current_password": ["The current password is incorrect."]})
    if user.email and normalize_login(new_email) == user.email_normalized:
        db.session.execute(*lockout.released(reservation))  # a right password, but nothing changes
        db.session.commit()
        raise ValidationFailed({"email": ["This is your address already."]})
    user_rows.lock_user_row(user.id)  # requests for this user take turns from here to the commit
    if user_rows.password_version(user.id) != user.password_version:  # changed, reset or disabled since the check
        refuse_changed_meanwhile(user.id, reservation,
                                 ValidationFailed({"current_password": ["The current password is incorrect."]}),
                                 failed_event="email_change_failed", client_id=client_id)
    code_required = code_required_now(user_id, otp, recent_mfa, reservation, failed_event="email_change_failed",
                                      client_id=client_id)
    if form and _change_sent_again(user.id, new_email):
        db.session.execute(*lockout.released(reservation))  # a right password, and nothing more to do
        db.session.commit()
        return
    try:
        _check_mail_budget(user.id)
    except TooManyMails:
        db.session.execute(*lockout.released(reservation))
        db.session.commit()
        raise
    if code_required:
        mfa.spend_code(user_id, otp, reservation, client_id=client_id, purpose="email_change")
    with lockout.taken_back_on_failure(reservation):  # a right password, whose change the database refused
        db.session.execute(*lockout.settled(reservation))
        owner = _owner_of(new_email, user)
        user.pending_email = new_email
        if owner is not None:
            _spend_a_link(user, new_email)  # no older link applies either
            audit.record("email_change_refused", user_id=user.id, client_id=client_id, detail={"reason": "taken"})
        else:
            link = _issue_link(user, new_email)
            audit.record("email_change_requested", user_id=user.id, client_id=client_id)
        # read before the commit (notifications.Addressee): read after it, the rows would be loaded
        # again, in a transaction the wait below would hold open, or not at all (`users remove`)
        to, taken_by = notifications.addressee(user), (notifications.addressee(owner) if owner is not None else None)
        db.session.commit()
    bearer_cache.wait_out_cached_answers(user_id)  # the local API's next answer reports the pending address
    if taken_by is not None:
        mail.send_later(new_email, "email_taken", user_id=taken_by.user_id, username=taken_by.username,
                        name=taken_by.name, login=mail.link("/account/login"))
    else:
        _send_link(to.user_id, to.username, new_email, link, change=True)
    if to.email:
        mail.send_later(to.email, "email_change_requested", user_id=to.user_id, username=to.username,
                        name=to.name, new_email=notifications.masked_address(new_email),
                        when=notifications.now_text(), client_name=_client_name(client_id))


@dataclass
class Verified:
    """The outcome of a verification link: `email` is the verified address; `reason` says why not."""

    email: str | None = None
    changed: bool = False  # the link applied a new address
    reason: str | None = None  # "unknown", "expired", "used", "superseded", "taken", "disabled"


def _taken(user: User) -> Verified:
    """The link's address belongs to another account now: the pending change ends (committed, and
    waited out as an applied one is: the local API's next answer reports no pending address)."""
    user_id = user.id
    user.pending_email = None
    audit.record("email_verification_failed", user_id=user_id, detail={"reason": "taken"})
    db.session.commit()
    bearer_cache.wait_out_cached_answers(user_id)
    return Verified(reason="taken")


def _locked_user(user_id: int) -> User | None:
    """The link's user, read under the row's lock, kept until the commit (the address, a unique
    key, may change). A read with FOR UPDATE was not enough: SQLite ignores it, and a password
    change committed between the read and the link's use ended the pending change unseen, and the
    link applied it all the same."""
    user_rows.lock_user_row_for_key_change(user_id)
    return db.session.scalar(select(User).where(User.id == user_id).execution_options(populate_existing=True))


def _taken_meanwhile(row) -> Verified:
    """The address was taken by another account after this link's check (the unique key refused
    it): the link is used and the change ends, as when it was taken before."""
    user = _locked_user(row.user_id)
    if user is None or not account_tokens.consume(row):
        db.session.rollback()
        return Verified(reason="used")
    return _taken(user)


def link_works(token: str | None) -> bool:
    """Whether a verification link would apply now, without using it, auditing or changing
    anything: the answer to a HEAD (a mail scanner's, RFC 9110 section 9.3.2: a safe method). A
    change to an address another account has now would not (verify_email: "taken")."""
    checked = account_tokens.check(token, account_tokens.VERIFY_EMAIL)
    works = False
    if checked.row is not None:
        user = db.session.get(User, checked.row.user_id)
        address = checked.row.email or ""
        key = normalize_login(address)
        works = (user is not None and user.enabled
                 and (key == user.email_normalized
                      or (key == normalize_login(user.pending_email or "") and _owner_of(address, user) is None)))
    db.session.rollback()  # end the read
    return works


def verify_email(token: str | None) -> Verified:
    """Follow a verification link: mark the address verified, or apply the pending new one.

    The token is used in the same transaction as the change. A link whose address is neither the
    user's nor the one they now ask for (they asked for another since) is refused as superseded.
    """
    checked = account_tokens.check(token, account_tokens.VERIFY_EMAIL)
    disabled = (account_tokens.disabled_owner(token, account_tokens.VERIFY_EMAIL)
                if checked.row is None and checked.reason == "used" else None)  # ended by `users disable` too
    if disabled is not None:  # none opens while the account is disabled
        audit.record("email_verification_failed", user_id=disabled, detail={"reason": "disabled"})
        db.session.commit()
        return Verified(reason="disabled")
    if checked.row is None:
        audit.record("email_verification_failed", detail={"reason": checked.reason})
        db.session.commit()
        return Verified(reason=checked.reason)
    row = checked.row
    user = _locked_user(row.user_id)
    address = row.email or ""
    key = normalize_login(address)
    if user is None or key not in (user.email_normalized, normalize_login(user.pending_email or "")):
        account_tokens.consume(row)
        audit.record("email_verification_failed", user_id=row.user_id, detail={"reason": "superseded"})
        db.session.commit()
        return Verified(reason="superseded")
    if not user.enabled:  # a disable ends pending links; none opens while disabled (a direct change)
        audit.record("email_verification_failed", user_id=user.id, detail={"reason": "disabled"})
        db.session.commit()
        return Verified(reason="disabled")
    if not account_tokens.consume(row):  # another request used it first (the link opened twice at once)
        db.session.rollback()
        audit.record("email_verification_failed", user_id=row.user_id, detail={"reason": "used"})
        db.session.commit()
        return Verified(reason="used")
    old = user.email
    changed = key != user.email_normalized
    if changed:
        if _owner_of(address, user) is not None:
            return _taken(user)
        user.email, user.email_normalized = address, key
        user.pending_email = None
        try:
            db.session.flush()  # an account that took the address meanwhile (its own link, a registration)
        except IntegrityError:
            db.session.rollback()
            return _taken_meanwhile(row)
        account_tokens.supersede(user.id, account_tokens.PASSWORD_RESET)  # links mailed to the old address
    user.email_verified = True
    audit.record("email_changed" if changed else "email_verified", user_id=user.id)
    # read before the commit: read after it, the row would be loaded again, in a transaction the
    # wait below would hold open, or not at all (`users remove`)
    to = notifications.addressee(user)
    db.session.commit()
    bearer_cache.wait_out_cached_answers(to.user_id)  # the local API's next answer reports it
    if changed:
        for recipient in filter(None, (old, address)):
            mail.send_later(recipient, "email_changed", user_id=to.user_id, username=to.username,
                            name=to.name,
                            old_email=notifications.masked_address(old) if old else None,
                            new_email=notifications.masked_address(address), when=notifications.now_text())
    return Verified(email=address, changed=changed)
