"""User accounts: create, find, sign in with lockout, change and set passwords."""

import secrets
from dataclasses import dataclass
from typing import NoReturn

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..errors import (AccountLocked, AlreadyDone, Conflict, CredentialSuperseded, NotFound, SecondFactorRequired,
                      ValidationFailed)
from ..extensions import db
from ..models import User
from ..store import accounts as store
from ..store import issued_grants as grant_rows
from ..store import listing
from ..store import browser_sessions as session_rows
from ..store.accounts import LOGIN_MATCHES, SignInUser
from ..store.writes import Write, write, write_after
from . import (
    account_tokens,
    audit,
    bearer_cache,
    issued_grants,
    lockout,
    logout,
    metrics,
    mfa,
    notifications,
    browser_sessions,
)
from .browser_sessions import SessionUser
from .login_names import MAX_EMAIL_LENGTH, MAX_USERNAME_LENGTH, length_problem, normalize_login
from .password_policy import Verdict, check_password, confirmed, normalize, password_problems
from .passwords import hash_password, needs_rehash, spend_equal_time, verify_password, verify_password_evenly


# Built once: every sign-in looks its user up by user name or email (normalized, as `key`).
_USER_BY_LOGIN = select(User).where(LOGIN_MATCHES)


def find_user(login: str) -> User | None:
    """Find a user by user name or email, case-insensitively."""
    key = normalize_login(login)
    if not key:
        return None
    return db.session.scalar(_USER_BY_LOGIN, {"key": key})


def existing_user(username: str) -> User:
    """The user an operator's command names (by user name or email); NotFound, the read's
    transaction ended, when there is none: a command that finds nothing to do leaves nothing open."""
    user = find_user(username)
    if user is None:
        db.session.rollback()
        raise NotFound(f"no user {username!r}")
    return user


def _logins_taken(*logins: str | None) -> set[str]:
    """Which of these logins (normalized) a user signs in with already, read in one statement: two
    reads could each see a different moment, another command's user committed between them (the
    same user added twice at once) found by its address but not by its name."""
    keys = {key for key in map(normalize_login, filter(None, logins)) if key}
    if not keys:
        return set()
    rows = db.session.execute(select(User.username_normalized, User.email_normalized).where(
        or_(User.username_normalized.in_(keys), User.email_normalized.in_(keys))))
    return keys & {name for row in rows for name in row}


def check_new_user(username: str, email: str | None, password: str, name: str | None = None) -> dict[str, list[str]]:
    """Return field errors for a would-be user (empty when fine)."""
    errors: dict[str, list[str]] = {}
    username_problem = length_problem(username, MAX_USERNAME_LENGTH)
    email_problem = length_problem(email, MAX_EMAIL_LENGTH) if email else None
    # a login too long to be anyone's is not looked up (a megabyte-long parameter read for nothing)
    taken = _logins_taken(None if username_problem else username, None if email_problem else email)
    if not username.strip():
        errors["username"] = ["A user name is required."]
    elif username_problem:
        errors["username"] = [username_problem]
    elif normalize_login(username) in taken:
        errors["username"] = ["This user name is taken."]
    if email_problem:
        errors["email"] = [email_problem]
    elif email and normalize_login(email) in taken:
        errors["email"] = ["This email address is taken."]
    problems = password_problems(password, username=username, email=email, name=name)
    if problems:
        errors["password"] = problems
    return errors


def build_user(username: str, email: str | None, name: str | None, password: str, *,
               email_verified: bool = False, password_hash: str | None = None) -> User:
    """Create a User object (not yet added); the password must already satisfy the policy.
    `password_hash`: its new_password_hash, if computed already (before a transaction's first write).

    The address counts as verified only if the caller says so (an operator who vouches for it);
    otherwise it waits for its owner to follow a verification link."""
    stamp = now()
    return User(
        subject=secrets.token_hex(16),
        username=username.strip(),
        username_normalized=normalize_login(username),
        email=email.strip() if email else None,
        email_normalized=normalize_login(email) if email else None,
        email_verified=bool(email and email_verified),
        name=name,
        password_hash=password_hash or hash_password(normalize(password)),
        password_version=1,
        password_changed_at=stamp,
        failed_attempts=0,
        locked_until=0,
        created_at=stamp,
    )


def create_user(username: str, password: str, email: str | None = None, name: str | None = None, *,
                email_verified: bool = False) -> User:
    """Create a user, enforcing the password policy and unique names."""
    _refuse_new_user(username, check_new_user(username, email, password, name))
    user = build_user(username, email, name, password, email_verified=email_verified)
    db.session.add(user)
    try:
        db.session.flush()  # its row id, which the audit log names users by
    except IntegrityError:
        # the same user added at once by another command: refused as when added after it
        db.session.rollback()
        _refuse_new_user(username, check_new_user(username, email, password, name))
        raise
    audit.record("user_created", user_id=user.id, detail={"username": user.username})
    db.session.commit()
    return user


def _refuse_new_user(username: str, errors: dict[str, list[str]]) -> None:
    if errors:
        if "username" in errors and "taken" in errors["username"][0]:
            raise Conflict(f"user {username!r} already exists")
        raise ValidationFailed(errors)


def list_users() -> list[User]:
    return listing.by_code_point(User, User.username_normalized)


def remove_user(username: str) -> None:
    user = existing_user(username)
    user_id = user.id
    store.lock_user_row(user_id)  # the same command run twice at once: the second waits, then finds no user
    if db.session.scalar(select(User.id).where(User.id == user_id)) is None:
        db.session.rollback()
        raise NotFound(f"no user {username!r}")
    # their sessions and grants go with the row: tell those clients first, in the same transaction
    logout.user_logged_out(user_id, user.subject, reason="user_removed")
    # the consents, codes and refresh tokens before the row, not in its cascade (codes first there):
    # a redemption or rotation in flight holds its code's or token's row, then stores a refresh
    # token that refers to the user's row, which the row's deletion holds (FOR UPDATE) while its
    # cascade waits for that code or token; and `clients remove` takes consents before codes
    grant_rows.delete_user_grants(user_id)
    db.session.delete(user)
    audit.record("user_removed", user_id=user_id, detail={"username": user.username})
    db.session.commit()
    bearer_cache.wait_out_cached_answers(user_id, removed=True)


# --- sign-in and lockout -------------------------------------------------


def _lock_remaining(user: "User | SignInUser") -> int:
    return max(0, user.locked_until - now())


@dataclass
class SignInResult:
    user: SessionUser | None
    locked: bool = False
    sid: str | None = None  # the browser session sign_in started, and when
    auth_time: int | None = None
    public_sid: str | None = None
    # the password was right and the user has a second factor: no session yet (finish_sign_in)
    needs_second_factor: bool = False
    # the password was right, but the client requires a verified address the user has not
    # (authenticate's `needs_verified_email`): accepted, and no sign-in
    unverified_email: bool = False
    reservation: lockout.Reservation | None = None  # a right password's, until its writes commit
    amr: str = mfa.AMR_PASSWORD  # how the person signed in (RFC 8176 names, space-separated)


def named_by_email(login: str, user: SessionUser) -> bool:
    """Whether a sign-in's login named its user by email address rather than user name (a user name
    never holds "@", login_names.username_characters_problem)."""
    return bool(user.email) and normalize_login(login) == normalize_login(user.email)


def _check_password(login: str, password: str, client_id: str | None,
                    needs_verified_email: bool = False) -> tuple[SignInResult, list[Write]]:
    """Check a user name (or email) and password, counting failures toward lockout.

    The attempt is counted as a failure, and committed, before the password is hashed
    (lockout.reserve_by_login, which reads the user in the same statement), so concurrent guesses
    cannot outrun the lock. A failure then records its audit event; a success returns the writes
    it needs (settle its reservation, rehash, audit), for the caller to run with its own in one
    transaction. Unknown users cost the same time as known ones, and a locked account fails
    whether or not the password is right; the caller shows one message for every failure.
    """
    key = normalize_login(login)
    # the common case, an enabled user not locked, in one statement: the read and the reservation
    found = (lockout.reserve_by_login(key) if key else None) or _reserve_or_refuse(key, password, client_id)
    if isinstance(found, SignInResult):
        return found, []
    user, reservation = found
    # as long as an unknown user's dummy check, also for a hash made before the cost was raised
    if not verify_password_evenly(user.password_hash, normalize(password)):
        audit.record("sign_in_failed", user_id=user.id, client_id=client_id, detail={"reason": "bad_password"})
        locked = lockout.commit_refusal(reservation)
        metrics.count_sign_in("failure")
        return SignInResult(None, locked=locked), []
    signed_in = SessionUser._make(user[:len(SessionUser._fields)])
    second_factor = bool(user.has_second_factor)
    # with a second factor to come, a right password only takes back its own reservation: the
    # count is reset by a right second step, so guesses at the code still meet the lock
    success = [lockout.released(reservation) if second_factor else lockout.settled(reservation)]
    if needs_rehash(user.password_hash):
        success.append(store.password_hash_update(user.id, hash_password(normalize(password)), user.password_hash))
    unverified = needs_verified_email and not signed_in.email_verified
    success.append(audit.event_write("sign_in_password_accepted" if second_factor or unverified else "sign_in",
                                     user_id=user.id, client_id=client_id, password_version=user.password_version))
    return SignInResult(signed_in, needs_second_factor=second_factor, reservation=reservation,
                        unverified_email=unverified), success


def _reserve_or_refuse(key: str, password: str, client_id: str | None) -> "tuple[SignInUser, lockout.Reservation] | SignInResult":
    """When the one-statement reservation counted nothing: the user as read, to say why (no such
    user, disabled, locked), refused after as long as a password check and with its audit event.
    A user that is none of these by now (a lock that has just ended) is reserved as before."""
    user = store.sign_in_user(key) if key else None
    if user is None:
        return _refuse_unknown_user(password, client_id)
    if not user.enabled:  # answered as a wrong password, after as long, and not counted toward lockout
        spend_equal_time(normalize(password))
        audit.record("sign_in_failed", user_id=user.id, client_id=client_id, detail={"reason": "disabled"})
        db.session.commit()
        metrics.count_sign_in("failure")
        return SignInResult(None)
    try:
        reservation = None if _lock_remaining(user) else lockout.reserve(user.id)
    except lockout.UserGone:  # removed since the read above (`users remove`): no one to count or lock
        return _refuse_unknown_user(password, client_id)
    if reservation is None:  # locked (also if the lock was set since the read above)
        spend_equal_time(normalize(password))
        audit.record("sign_in_failed", user_id=user.id, client_id=client_id, detail={"reason": "locked"})
        db.session.commit()
        metrics.count_sign_in("locked")
        return SignInResult(None, locked=True)
    return user, reservation


def _refuse_unknown_user(password: str, client_id: str | None) -> SignInResult:
    """Refuse a sign-in that names no user, after as long as a password check, audited."""
    spend_equal_time(normalize(password))
    audit.record("sign_in_failed", client_id=client_id, detail={"reason": "unknown_user"})
    db.session.commit()
    metrics.count_sign_in("failure")
    return SignInResult(None)


def authenticate(login: str, password: str, *, client_id: str | None = None,
                 needs_verified_email: bool = False) -> SignInResult:
    """Check a user name (or email) and password, counting failures toward lockout (no browser
    session). A right password with a second factor to come is not a sign-in yet (as on the page):
    the password grant refuses it; nor, with `needs_verified_email`, one of a user whose address
    is not verified (`unverified_email`)."""
    result, success = _check_password(login, password, client_id, needs_verified_email)
    if success:
        with lockout.taken_back_on_failure(result.reservation):
            stored = write(*success)[-1]
        if stored != 1:  # the sign-in's event, written only while the user is unchanged
            return _changed_meanwhile(result.user.id, client_id)
        if not result.needs_second_factor and not result.unverified_email:
            metrics.count_sign_in("success")
    return result


def sign_in(login: str, password: str, *, client_id: str | None = None) -> SignInResult:
    """Check a user name (or email) and password and start a browser session, in one transaction.

    The result carries the new session's sid and auth time; for a user with a second factor it
    carries no session but `needs_second_factor` (the caller holds the half-signed-in state and
    calls finish_sign_in).
    """
    result, success = _check_password(login, password, client_id)
    if result.user is not None and result.needs_second_factor:
        with lockout.taken_back_on_failure(result.reservation):
            write(*success)
    elif result.user is not None:
        session, store = browser_sessions.new_session(result.user.id, client_id=client_id,
                                                      password_version=result.user.password_version)
        with lockout.taken_back_on_failure(result.reservation):
            stored = write(*success, store)[-1]
        if stored != 1:
            return _changed_meanwhile(result.user.id, client_id)
        result.sid, result.auth_time, result.public_sid = session
        metrics.count_sign_in("success")
    return result


def spend_pending_write(user_id: int, pending_id: str) -> Write:
    """The write that spends a half-finished sign-in's id (login_session.hold_for_second_factor);
    in the second step's transaction it makes that transaction fail for a second use
    (IntegrityError)."""
    return account_tokens.spend_write(user_id, account_tokens.PENDING_SIGN_IN, pending_id, pending_spent_until())


def abandon_pending(user_id: int, pending_id: str) -> None:
    """A half-finished sign-in given up (its browser signed out, or another user signed in there):
    its id spent, as a finished one's is, so a copy of the cookie taken before it finishes no
    second step afterwards. Nothing for a user removed meanwhile: their state names no one."""
    if db.session.get(User, user_id) is None:
        return
    account_tokens.spend_once(user_id, account_tokens.PENDING_SIGN_IN, pending_id, pending_spent_until())
    db.session.commit()


def pending_spent_until() -> int:
    """How long a spent half-finished sign-in's id is kept: until no copy of its cookie could be
    used anyway (pending_user: MFA_PENDING_SECONDS from its start, which is at most 5 s ahead)."""
    return now() + current_app.config["MFA_PENDING_SECONDS"] + 5


def _changed_meanwhile(user_id: int, client_id: str | None, *, reason: str = "changed_meanwhile") -> SignInResult:
    """A sign-in whose session was not stored: the password changed, or the user was disabled,
    while it was checked (browser_sessions.new_session), or its second step was finished already
    (`reason` finished_already). Refused as a wrong password is."""
    audit.record("sign_in_failed", user_id=user_id, client_id=client_id, detail={"reason": reason})
    db.session.commit()
    metrics.count_sign_in("failure")
    return SignInResult(None)


def pending_user(user_id: int, password_version: int, started_at: int, pending_id: str) -> SessionUser | None:
    """The user of a half-finished sign-in (a right password, no second step yet), while it may
    still be finished: younger than MFA_PENDING_SECONDS, the password unchanged since, and not
    finished already (its id spent: a copy of the cookie from before its second step)."""
    if now() - started_at > current_app.config["MFA_PENDING_SECONDS"] or started_at > now() + 5:
        return None
    if account_tokens.spent(account_tokens.PENDING_SIGN_IN, pending_id):
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.enabled or user.password_version != password_version:
        return None
    return SessionUser.of(user)


def finish_sign_in(user: SessionUser, code: str, *, pending_id: str, amr: str = mfa.AMR_PASSWORD,
                   client_id: str | None = None) -> SignInResult:
    """The second step: check a TOTP or recovery code (counted toward lockout), then start the
    browser session, whose methods are `amr` plus the second factor's (and `mfa`), and spend the
    half-finished sign-in's `pending_id` in the same transaction (spend_pending_write)."""
    check = mfa.check_code(user.id, code, client_id=client_id)
    if check.method is None:
        return SignInResult(None, locked=check.locked)
    methods = mfa.amr_with_second_factor(amr, check.method)
    session, insert = browser_sessions.new_session(user.id, amr=methods, password_version=user.password_version,
                                                  client_id=client_id)
    try:
        # one transaction, which takes the user's row before the code's, in the order a change that
        # spends a code takes them (store.writes.write_after); a write that fails leaves the code usable
        with lockout.taken_back_on_failure(check.reservation):
            stored = write_after(check.spending, spend_pending_write(user.id, pending_id), *check.success,
                                 audit.event_write("sign_in", user_id=user.id, client_id=client_id,
                                                   detail={"amr": methods}, password_version=user.password_version),
                                 insert, locked_first=store.user_row_lock(user.id))
    except IntegrityError:  # finished already, by a copy of the cookie (or a double click)
        return _changed_meanwhile(user.id, client_id, reason="finished_already")
    if stored is None:  # the code was spent meanwhile
        return SignInResult(None, locked=mfa.refuse_spent(user.id, check, client_id=client_id).locked)
    mfa.code_spent(check)
    if stored[-1] != 1:
        return _changed_meanwhile(user.id, client_id)
    metrics.count_sign_in("success")  # the password's check counted nothing: this step decided
    result = SignInResult(user, amr=methods)
    result.sid, result.auth_time, result.public_sid = session
    return result


# --- passwords -------------------------------------------------------------


def revoke_grants_and_sessions(user: User, keep_sid: str | None, *, reason: str = "password_changed",
                               renewed_sid: str | None = None) -> None:
    """Revoke a user's unused authorization codes, browser sessions (but `keep_sid`, which takes
    the cookie sid `renewed_sid` if given) and refresh tokens; their clients' logout tokens are
    queued with `reason`. The caller holds the user's row (locked_user) and commits.

    Lock order: the user's row, her codes, her sessions, then her refresh tokens, as a code's
    redemption takes its code, then its session (FOR SHARE), then the user's row (KEY SHARE, which
    the caller's FOR NO KEY UPDATE lets by). Sessions before refresh tokens: a code minted after
    the codes' end (an insert the user's lock does not hold off) and redeemed before its session's
    end makes that end wait for its commit, and the refresh tokens' revocation then sees its token;
    one redeemed after waits for this commit and finds its session ended. With the refresh tokens
    first, its token was committed after their revocation and outlived the change. A caller that
    runs this for several users in one transaction (the seed) takes the rows of the API scopes
    and then of the clients of their grants first, each in name order, before the users': `scopes
    remove` takes its scope's row, `clients remove` its client's, then that scope's or client's
    codes and refresh tokens of every user (seed._lock_in_one_order)."""
    stamp = now()
    issued_grants.end_user_codes(user.id)
    sessions = logout.live_session_clients(user.id, user.subject, keep_sid=keep_sid)  # before they end
    session_rows.revoke_user_sessions(user.id, stamp, keep_sid=keep_sid)
    if keep_sid and renewed_sid:
        session_rows.renew_sid(keep_sid, renewed_sid)
    # the families told are those this revokes: one read before would miss a code redeemed meanwhile
    families = grant_rows.revoke_user_refresh_tokens(user.id, stamp)
    logout.user_logged_out(user.id, user.subject, keep_sid=keep_sid, reason=reason, families=families,
                           sessions=sessions)


def new_password_hash(new_password: str) -> str:
    """The Argon2id hash of a new password, as stored. Callers that write in the same transaction
    compute it before their first write: on SQLite the first write takes the database's one write
    lock, and every other worker's write would wait out the hash (24 ms) behind it."""
    return hash_password(normalize(new_password))


def store_new_password(user: User, password_hash: str) -> None:
    """Store a new password's hash (new_password_hash), bump the password version, end pending
    reset links (a reset link must not outlive the password it was sent to replace) and a pending
    address change (asked for with the old password: the notice to the current address tells its
    owner that a new password keeps the address; its link then applies nothing, as superseded);
    the caller revokes grants and sessions, commits, and then waits out the workers' remembered
    answers for the user (bearer_cache.wait_out_cached_answers)."""
    user.password_hash = password_hash
    user.password_version = User.password_version + 1  # as the row has it (a read may predate its lock)
    user.password_changed_at = now()
    user.pending_email = None
    account_tokens.supersede(user.id, account_tokens.PASSWORD_RESET)


def locked_user(user_id: int):
    """The query for a user's row, locked against other changes of it until the commit.

    FOR NO KEY UPDATE, not FOR UPDATE: FOR UPDATE also holds off every insert of a row that
    refers to the user (a rotation's successor takes KEY SHARE on it), while a password change
    waits for that rotation's old token to revoke it: a deadlock. populate_existing: the request
    may have loaded this user already (the bearer token's check); the locked re-read must replace
    those attributes, or a concurrent change is lost."""
    return (select(User).where(User.id == user_id).with_for_update(key_share=True)
            .execution_options(populate_existing=True))


def change_password(
    user_id: int,
    current_password: str,
    new_password: str,
    confirm_password: str,
    *,
    keep_sid: str | None = None,
    renewed_sid: str | None = None,
    client_id: str | None = None,
    otp: str | None = None,
    recent_mfa: bool = False,
    password_version: int | None = None,
) -> User:
    """Change a user's password in one transaction (the web page and the local API both call this).

    Verifies the current password (the attempt is counted toward lockout before it is hashed,
    as at sign-in: lockout.py), applies the policy, bumps the password version, revokes every
    refresh token and every other session. The session it keeps (`keep_sid`, the browser's that
    changed it) takes the cookie sid `renewed_sid`, so a copy of its cookie from before the change
    signs nobody in. Once committed, it waits until no worker can still accept the user's older
    tokens from memory (bearer_cache.py), and only then returns.

    A user with a second factor also gives a code (`otp`) unless the caller's sign-in used one
    recently (`recent_mfa`: mfa.recently_verified); without one, SecondFactorRequired before the
    password is looked at (mfa.code_required), and again under the user's lock for a first factor
    set up meanwhile (code_required_now). The code is checked and spent last, in the
    change's transaction (mfa.spend_code): a change refused for its passwords keeps the code.

    `password_version` is the version the caller's credential was issued under (the access
    token's `pwv`): a change that another request (the same one sent twice, a retry) made first
    has superseded it, so the current password it sends is no longer the user's but was not
    wrong. That is CredentialSuperseded, neither counted toward lockout nor audited as a failure.
    """
    code_required = mfa.code_required(user_id, otp, recent_mfa=recent_mfa)
    locked = locked_user(user_id)
    reservation = lockout.reserve(user_id)
    if reservation is None:
        user = db.session.scalar(locked)
        remaining = _lock_remaining(user) if user is not None else 0
        db.session.rollback()
        if user is None:
            raise NotFound("no such user")
        # a password tried while locked is audited, as at sign-in and at a factor's removal
        audit.record("password_change_failed", user_id=user_id, client_id=client_id, detail={"reason": "locked"})
        db.session.commit()
        raise AccountLocked(max(remaining, 1))
    # read without the row's lock: the checks and the hash below must not hold it (the user's other
    # requests write the row); store.hash_unchanged locks it after the hash, before the first write
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None:
        db.session.rollback()
        raise NotFound("no such user")
    if not verify_password(user.password_hash, normalize(current_password)):
        _refuse_current_password(user_id, reservation, client_id, password_version=password_version,
                                 page=keep_sid is not None, new_password=new_password, confirm_password=confirm_password)
    errors: dict[str, list[str]] = {}
    problems = password_problems(new_password, username=user.username, email=user.email, name=user.name,
                                 current=current_password)
    if problems:
        errors["new_password"] = problems
    if not confirmed(new_password, confirm_password):
        errors["confirm_password"] = ["The confirmation does not match the new password."]
    if errors:
        db.session.execute(*lockout.released(reservation))  # a right password, but nothing changes
        db.session.commit()
        raise ValidationFailed(errors)
    password_hash = new_password_hash(new_password)  # before the first write (see new_password_hash)
    if not store.hash_unchanged(user_id, user.password_hash):  # changed since the read
        _refuse_current_password(user_id, reservation, client_id, password_version=password_version,
                                 page=keep_sid is not None, new_password=new_password, confirm_password=confirm_password)
    code_required = code_required_now(user_id, otp, recent_mfa, reservation, failed_event="password_change_failed",
                                      client_id=client_id)
    if code_required:
        mfa.spend_code(user_id, otp, reservation, client_id=client_id)
    with lockout.taken_back_on_failure(reservation):
        db.session.execute(*lockout.settled(reservation))
        store_new_password(user, password_hash)  # no rehash of the current password: it is replaced
        revoke_grants_and_sessions(user, keep_sid, renewed_sid=renewed_sid)
        audit.record("password_changed", user_id=user.id, client_id=client_id)
        to = notifications.addressee(user)
        db.session.commit()
    bearer_cache.wait_out_cached_answers(user_id)
    notifications.password_changed(to, how=notifications.CHANGED_BY_USER, client_id=client_id)
    return user


def code_required_now(user_id: int, otp: str | None, recent_mfa: bool, reservation: lockout.Reservation, *,
                      failed_event: str, client_id: str | None) -> bool:
    """mfa.code_required asked again under the user's lock (the password and address changes
    take it after their password's check): a first second factor set up since the question was
    first asked, before that check, wants its code now. Without one the change is refused as it
    would have been after the factor (refuse_changed_meanwhile)."""
    try:
        return mfa.code_required(user_id, otp, recent_mfa=recent_mfa)
    except SecondFactorRequired as err:
        refuse_changed_meanwhile(user_id, reservation, err, failed_event=failed_event, client_id=client_id)


def refuse_changed_meanwhile(user_id: int, reservation: lockout.Reservation, refusal: Exception, *,
                             failed_event: str, client_id: str | None) -> NoReturn:
    """A change to the account whose checks something committed meanwhile undid (a password
    change, reset or disable; a first second factor): roll it back and raise `refusal`, the
    answer it would have had after that event; audited (`failed_event`, reason
    `changed_meanwhile`), and its reservation taken back: the password was right when it was sent."""
    db.session.rollback()
    db.session.execute(*lockout.released(reservation))
    audit.record(failed_event, user_id=user_id, client_id=client_id, detail={"reason": "changed_meanwhile"})
    db.session.commit()
    raise refusal


# How long after a password change the same form sent again (a double click, a resend of a post
# whose answer was lost) is answered as the change it asked for, not as a wrong current password.
SENT_AGAIN_SECONDS = 60


def _sent_again(user: User | None, new_password: str, confirm_password: str) -> bool:
    """Whether a change refused for its current password is its own form sent again: the browser
    session that changed the password moments ago (`user` is given only for a page's session,
    which the change kept) asks for the password it has now. Whoever sends it knows that password,
    so the answer tells them nothing."""
    return (user is not None and confirmed(new_password, confirm_password)
            and now() - user.password_changed_at <= SENT_AGAIN_SECONDS
            and verify_password(user.password_hash, normalize(new_password)))


def _refuse_current_password(user_id: int, reservation: lockout.Reservation, client_id: str | None, *,
                             password_version: int | None = None, page: bool = False, new_password: str = "",
                             confirm_password: str = ""):
    """A current password that is not (or no longer) the user's: audited, the reservation's
    failure kept; raises ValidationFailed, or AccountLocked if this attempt set the lock. Unless
    the change it asked for was made meanwhile, by the same request sent twice: then the
    reservation is taken back, and
    - the page's form sent again after its change (`_sent_again`) raises AlreadyDone;
    - a caller whose credential was issued under an older password version than the user's now
      (the local API's token: another change committed first) gets CredentialSuperseded."""
    db.session.rollback()  # the row lock goes; the reservation has counted the failure
    if page and _sent_again(db.session.get(User, user_id), new_password, confirm_password):
        db.session.execute(*lockout.released(reservation))
        db.session.commit()
        raise AlreadyDone()
    if password_version is not None and store.password_version(user_id) not in (None, password_version):
        db.session.execute(*lockout.released(reservation))  # its password was right when it was sent
        db.session.commit()
        raise CredentialSuperseded("the password was changed since the credential was issued")
    audit.record("password_change_failed", user_id=user_id, client_id=client_id)
    if lockout.commit_refusal(reservation):
        raise AccountLocked(current_app.config["LOCKOUT_SECONDS"])
    raise ValidationFailed({"current_password": ["The current password is incorrect."]})


def judged_password_hash(user: User, new_password: str, confirm_password: str) -> str:
    """A new password for a user who gives no current one (a reset link): the policy's verdict
    and the confirmation, ValidationFailed on either; otherwise the hash to store, computed here so
    that the caller can take it before its first write (new_password_hash)."""
    errors: dict[str, list[str]] = {}
    problems = password_problems(new_password, username=user.username, email=user.email, name=user.name)
    if problems:
        errors["new_password"] = problems
    if not confirmed(new_password, confirm_password):
        errors["confirm_password"] = ["The confirmation does not match the new password."]
    if errors:
        raise ValidationFailed(errors)
    return new_password_hash(new_password)


def replace_password(user: User, password_hash: str, *, event: str,
                     client_id: str | None = None, detail: dict | None = None) -> None:
    """Give a user a new password without their current one (a reset link, the operator), as
    change_password does the rest: a new password version (older access tokens are refused),
    pending reset links ended, every refresh token, code and browser session revoked; and the
    lockout count cleared, since whoever proved the account is theirs another way must not stay
    locked out. `password_hash` is new_password_hash's (judged_password_hash's), taken before the
    transaction's first write. The caller has checked its own proof, in this transaction, and
    commits; then it calls `password_replaced`."""
    store_new_password(user, password_hash)
    user.failed_attempts = 0
    user.locked_until = 0
    revoke_grants_and_sessions(user, None)
    audit.record(event, user_id=user.id, client_id=client_id, detail=detail)


def password_replaced(to: notifications.Addressee, *, how: str, client_id: str | None = None) -> None:
    """After replace_password's commit: wait until no worker accepts the older tokens, then tell the
    user. `to` is read before the commit (notifications.addressee): after it, a `users remove` may
    have left no row to read the address from."""
    bearer_cache.wait_out_cached_answers(to.user_id)
    notifications.password_changed(to, how=how, client_id=client_id)


def new_password_verdict(user_id: int, new_password: str, current_password: str | None = None) -> Verdict:
    """What the policy says of a would-be new password for this user (the page's strength meter):
    the same check change_password runs, without verifying the current password."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return check_password(new_password, username=user.username, email=user.email, name=user.name,
                          current=current_password)


def set_password(username: str, new_password: str) -> User:
    """Set a password as the operator (no current password); same policy and revocations."""
    user = existing_user(username)
    judged = (user.username, user.email, user.name)
    _refuse_weak_password(new_password, *judged)
    password_hash = new_password_hash(new_password)  # before the first write (see new_password_hash)
    store.lock_user_row(user.id)
    # by its id, not the object found: a `users remove` committed since leaves no row to write to
    user = db.session.get(User, user.id, populate_existing=True)
    if user is None:
        db.session.rollback()
        raise NotFound(f"no user {username!r}")
    if (user.username, user.email, user.name) != judged:  # an address or name changed since (a seed, a link)
        _refuse_weak_password(new_password, user.username, user.email, user.name)
    replace_password(user, password_hash, event="password_set")
    to = notifications.addressee(user)
    db.session.commit()
    metrics.count_password_change("cli")
    password_replaced(to, how=notifications.SET_BY_OPERATOR)
    return user


def _refuse_weak_password(new_password: str, username: str, email: str | None, name: str | None) -> None:
    """set_password's policy check, against the user's names as read (the transaction, and any
    lock it holds, end on a refusal)."""
    problems = password_problems(new_password, username=username, email=email, name=name)
    if problems:
        db.session.rollback()
        raise ValidationFailed({"password": problems})


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)
