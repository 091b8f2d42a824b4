"""Second factors: the authenticator app (TOTP, RFC 6238) and recovery codes, and the one check
every second step runs (`check_code`).

A TOTP secret is stored encrypted with the signing keys' key-encryption key (key_encryption.py).
A code is accepted for the current 30-second step or one either side, and only for a step newer
than the last one accepted, taken by a conditional UPDATE (store/mfa.py): a code, once used, is
refused, even to a request racing the first. Recovery codes are random, single use, shown once and
stored as SHA-256 under a random salt of their set (guessing 50 random bits is the protection, not
the hash's cost; the salt makes a copy of the table cost that guessing for each user's set, not
once for every account: OWASP ASVS 4.0.3, 2.6.2). Every code checked counts toward the same
lockout as a password, before it is checked (lockout.reserve): a right password does not reset
the count for a user with a factor (accounts.sign_in), only a right second step does, so guesses
at the code stop at the lock.

Passkeys (WebAuthn, services/passkeys.py) are a second factor too: they count in `user_factors`
and `has_second_factor`, and `reset_factors` removes them; `has_totp` is the app alone.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from flask import current_app

from ..clock import now
from ..errors import AccountLocked, Conflict, NotFound, SecondFactorRequired, SignInTooOld, ValidationFailed
from ..extensions import db
from ..models import User
from ..store import accounts as user_rows
from ..store import mfa as store
from ..store import passkeys as passkey_rows
from ..store.writes import Write, write
from . import account_tokens, audit, bearer_cache, key_encryption, lockout, metrics, notifications
from .password_policy import normalize
from .passwords import verify_password

TOTP_PERIOD_SECONDS = 30
TOTP_DIGITS = 6
TOTP_WINDOW_STEPS = 1  # a code of the step before or after the current one is accepted too
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols, none mistaken for another
RECOVERY_CODE_LENGTH = 10  # 50 random bits, shown as XXXXX-XXXXX
RECOVERY_SALT_BYTES = 6  # a set's salt: 48 random bits, 8 characters (base64url, so never a ".")

# RFC 8176 authentication method references
AMR_PASSWORD = "pwd"
AMR_OTP = "otp"
AMR_MFA = "mfa"
# acr values (docs/mfa.md); `acr_values=mfa` asks for the first
ACR_MFA = "mfa"
ACR_ONE_FACTOR = "1fa"


@dataclass(frozen=True)
class Factors:
    """What a user has, for the MFA page and the local API."""

    totp: bool
    totp_pending: bool  # an enrolment started and not yet confirmed
    recovery_codes_left: int
    passkeys: int = 0  # registered passkeys (services/passkeys.py)

    @property
    def any(self) -> bool:
        return self.totp or self.passkeys > 0


def user_factors(user_id: int) -> Factors:
    row = store.totp_row(user_id)
    return Factors(totp=row is not None and row[1] is not None, totp_pending=row is not None and row[1] is None,
                   recovery_codes_left=store.unused_recovery_codes(user_id),
                   passkeys=passkey_rows.passkey_count(user_id))


def has_totp(user_id: int) -> bool:
    """Whether the user has a confirmed authenticator app."""
    row = store.totp_row(user_id)
    return row is not None and row[1] is not None


def has_second_factor(user_id: int) -> bool:
    """Whether the user must give a second factor to sign in: an authenticator app or a passkey
    (one read on the autocommit connection)."""
    return store.has_second_factor(user_id)


# --- claims -----------------------------------------------------------------------------------


def misses_required_factor(client_row, amr: str | None) -> bool:
    """Whether a sign-in (its `amr`) falls short of a client that requires a second factor: a
    code or refresh token granted before the operator set require_mfa issues nothing more."""
    return bool(client_row.require_mfa) and AMR_MFA not in (amr or "").split()


def amr_with_second_factor(amr: str | None, method: str) -> str:
    """The session's methods after a second factor of `method`: that method, and `mfa`."""
    methods = (amr or AMR_PASSWORD).split()
    for name in (method, AMR_MFA):
        if name not in methods:
            methods.append(name)
    return " ".join(methods)


def acr_for(amr: str | None) -> str:
    """The acr value for a sign-in's methods: "mfa" with two factors, else "1fa" (docs/mfa.md)."""
    return ACR_MFA if AMR_MFA in (amr or "").split() else ACR_ONE_FACTOR


def sign_in_claims(amr: str | None) -> dict:
    """The `amr` and `acr` claims of a token issued for a sign-in with these methods (a grant
    stored before methods were recorded was a password sign-in)."""
    methods = (amr or AMR_PASSWORD).split()
    return {"amr": methods, "acr": acr_for(" ".join(methods))}


# --- enrolment ----------------------------------------------------------------------------------


def _secret(stored: str, user_id: int) -> str:
    return key_encryption.decrypt(stored, key_encryption.totp_label(user_id))


def start_totp(user_id: int) -> str:
    """Start (or restart) enrolling an authenticator app: a new secret, stored unconfirmed."""
    user_rows.lock_user_row(user_id)  # a second start at once replaces this one's row, after its commit
    if has_totp(user_id):
        db.session.rollback()
        raise Conflict("an authenticator app is already set up; remove it first")
    secret = pyotp.random_base32()
    store.put_pending_totp(user_id, key_encryption.encrypt(secret), now())
    db.session.commit()
    return secret


def pending_totp_secret(user_id: int) -> str | None:
    """The secret of the enrolment in progress, or None."""
    stored = _pending_totp(user_id)
    return None if stored is None else _secret(stored, user_id)


def _pending_totp(user_id: int) -> str | None:
    """The enrolment in progress as stored (its encrypted secret), or None."""
    row = store.totp_row(user_id)
    return None if row is None or row[1] is not None else row[0]


def provisioning_uri(secret: str, account_name: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS).provisioning_uri(
        name=account_name, issuer_name=current_app.config["PRODUCT_NAME"])


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an inline SVG made here (no outside service sees the secret). segno
    (with the XML writer it brings, about 1 MiB) is imported here, at enrolment, not at start."""
    import segno

    return segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", title="QR code for your authenticator app")


def code_time() -> int:
    """The time codes are checked at: the clock, in a function of its own so tests can stop it."""
    return now()


def _is_totp_code(code: str) -> bool:
    """Whether a normalized code has the shape of an app's code: six ASCII digits. str.isdigit()
    alone also takes other scripts' digits (１２３４５６), which hmac.compare_digest refuses."""
    return len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()


def _steps_of(secret: str, code: str, stamp: int) -> list[int]:
    """The time steps of the window (the current one and TOTP_WINDOW_STEPS either side) whose
    code this is, oldest first."""
    if not _is_totp_code(code):
        return []
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)
    current = stamp // TOTP_PERIOD_SECONDS
    return [step for step in range(current - TOTP_WINDOW_STEPS, current + TOTP_WINDOW_STEPS + 1)
            if hmac.compare_digest(totp.generate_otp(step), code)]


def _step_of(secret: str, code: str, after_step: int, stamp: int) -> int | None:
    """The time step (within the window) whose code this is, if newer than `after_step`."""
    return next((step for step in _steps_of(secret, code, stamp) if step > after_step), None)


#: a second "Confirm" (a double click): the recovery codes were on the first click's page
TOTP_SET_UP_ALREADY = ("your authenticator app is set up already; its recovery codes were shown after your first "
                       "click: if you did not save them, make new ones below")


def ensure_totp_unconfirmed(user_id: int) -> None:
    """Conflict(TOTP_SET_UP_ALREADY) if the user's authenticator app is confirmed: checked before
    anything else a confirmation needs, so a second click is told what happened."""
    if has_totp(user_id):
        raise Conflict(TOTP_SET_UP_ALREADY)


def confirm_totp(user_id: int, code: str) -> list[str]:
    """Confirm the enrolment with a valid code; returns the new recovery codes (shown once)."""
    ensure_totp_unconfirmed(user_id)
    # the set-up is read, and its code judged, under the user's row lock, held to the commit: a
    # set-up started again (start_totp) or removed (`users mfa-reset`) meanwhile takes the same
    # lock first, so the set-up confirmed is the one the code was judged by
    first = first_factor_locked(user_id)
    stored = _pending_totp(user_id)
    if stored is None:
        db.session.rollback()
        raise NotFound("no authenticator app is being set up")
    stamp = now()
    step = _step_of(_secret(stored, user_id), normalize_code(code), 0, code_time())
    if step is None or not store.confirm_totp(user_id, step, stamp):
        db.session.rollback()
        ensure_totp_unconfirmed(user_id)  # confirmed meanwhile by the same form's other click
        raise ValidationFailed({"code": ["That code is not right. Enter the 6 digits your app shows now."]})
    codes = _replace_recovery_codes(user_id, stamp)
    if first:
        end_changes_asked_without_a_factor(user_id)
    audit.record("mfa_enabled", user_id=user_id, detail={"factor": "totp"})
    db.session.commit()
    if first:
        factors_changed(user_id)
    notifications.sign_in_method_changed(user_id, notifications.AUTHENTICATOR_ADDED)
    return codes


def factors_changed(user_id: int) -> None:
    """After the commit of a first factor added or a factor removed: wait until no worker answers
    the local API from a remembered read of the user (bearer_cache.py), so the next
    GET /localapi/account reports `mfa_enabled` (and a pending address change a first factor
    ended) as they now are, as after an address change."""
    bearer_cache.wait_out_cached_answers(user_id)


def first_factor_locked(user_id: int) -> bool:
    """Whether the factor being added is the user's first, judged under the user's row lock, held
    until the caller's commit: a password or address change that found no factor asks again under
    the same lock (accounts.code_required_now), so it either commits first, and the first factor
    then ends what it asked without one (end_changes_asked_without_a_factor), or waits and finds
    the factor. Without the lock, on
    PostgreSQL, a change could ask between this read and this commit, and be kept after it."""
    user_rows.lock_user_row(user_id)
    return not has_second_factor(user_id)


def end_changes_asked_without_a_factor(user_id: int) -> None:
    """With the user's first second factor, end a pending address change, in the session's
    transaction: it was asked with the password alone, which now changes the address no more
    (the rule of code_required), and whoever asked holds its link."""
    user_rows.end_pending_email_change(user_id)


# --- recovery codes -------------------------------------------------------------------------------


def normalize_code(code: str) -> str:
    """A code as typed (spaces, dashes, lower case, an input method's full-width "１２３４５６":
    NFKC, as for passwords) in the form it is checked."""
    return "".join(normalize(code or "").split()).replace("-", "").upper()


def recovery_code_hash(code: str, salt: str | None) -> str:
    """A code as stored: `salt.digest` (SHA-256 of the salt and the normalized code, base64url;
    52 characters), or, for a set stored before sets had a salt (`salt` None), the bare SHA-256 in hex."""
    normalized = normalize_code(code)
    if salt is None:
        return hashlib.sha256(normalized.encode()).hexdigest()
    digest = hashlib.sha256(f"{salt}.{normalized}".encode()).digest()
    return f"{salt}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def _replace_recovery_codes(user_id: int, stamp: int) -> list[str]:
    codes = ["".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
             for _ in range(RECOVERY_CODE_COUNT)]
    salt = secrets.token_urlsafe(RECOVERY_SALT_BYTES)
    store.replace_recovery_codes(user_id, [recovery_code_hash(c, salt) for c in codes], stamp)
    return [f"{c[:5]}-{c[5:]}" for c in codes]


#: new recovery codes asked for by a user without an authenticator app (removed meanwhile, say)
NO_APP_FOR_CODES = "set up an authenticator app first"


def regenerate_recovery_codes(user_id: int) -> list[str]:
    """A new set of recovery codes; the old set stops working."""
    user_rows.lock_user_row(user_id)  # a second set asked for at once replaces this one, after its commit
    if not has_totp(user_id):
        db.session.rollback()
        raise Conflict(NO_APP_FOR_CODES)
    codes = _replace_recovery_codes(user_id, now())
    audit.record("recovery_codes_regenerated", user_id=user_id)
    db.session.commit()
    notifications.sign_in_method_changed(user_id, notifications.RECOVERY_CODES_REPLACED)
    return codes


# --- the second step -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of a code: the method it proved ("otp"), or None; and, when it was right, the
    writes that settle its lockout reservation and record it, for the caller to run with its own."""

    method: str | None
    locked: bool = False
    retry_after: int = 0  # when locked: the seconds the lock has left
    success: tuple[Write, ...] = ()
    # a right code whose request goes on to check a password: it neither adds to the count nor
    # resets it (the password's own check does), so a right code cannot wipe wrong passwords out
    neutral: tuple[Write, ...] = ()
    # the conditional write that spends the right code, for the caller to run first in its own
    # transaction (check_code), and what refuse_spent needs if that write changes no row
    spending: Write | None = None
    reservation: lockout.Reservation | None = None
    code: str = ""
    purpose: str = ""


def _spending(user_id: int, code: str) -> Write | None:
    """The conditional write that spends a TOTP or recovery code of the user (it changes no row
    if the code was spent meanwhile), or None when the code cannot be one."""
    if _is_totp_code(code):
        row = store.totp_row(user_id)
        if row is None or row[1] is None:
            return None
        step = _step_of(_secret(row[0], user_id), code, row[2], code_time())
        return None if step is None else store.accept_step(user_id, step)
    if len(code) == RECOVERY_CODE_LENGTH:
        stored = store.unused_recovery_code_hash(user_id)  # its salt is the set's
        if stored is None:
            return None
        salt, dot, _ = stored.partition(".")
        return store.spend_recovery_code(user_id, recovery_code_hash(code, salt if dot else None), now())
    return None


def _used_already(user_id: int, code: str) -> bool:
    """Whether a code refused is the user's app's code of a step within the window that was
    accepted already: a code used again, not merely a wrong one."""
    if not _is_totp_code(code):
        return False
    row = store.totp_row(user_id)
    if row is None or row[1] is None:
        return False
    return any(step <= row[2] for step in _steps_of(_secret(row[0], user_id), code, code_time()))


def _kind(normalized_code: str) -> str:
    return "totp" if normalized_code.isdigit() else "recovery_code"


def _record_bad_code(user_id: int, code: str, reservation: lockout.Reservation, *, client_id: str | None,
                     purpose: str) -> None:
    """Count and audit a wrong code (and the lock its reservation set), committed. A code of the
    app used again is audited as such (`code_reused`), and the user is told (ASVS 4.0.3, 2.8.5)."""
    kind = _kind(code)
    reused = _used_already(user_id, code)
    metrics.count_mfa(kind, "failure")
    audit.record("mfa_failed", user_id=user_id, client_id=client_id,
                 detail={"reason": "code_reused" if reused else "bad_code", "for": purpose})
    lockout.commit_refusal(reservation)
    if reused:
        notifications.code_used_again(user_id)


def check_code(user_id: int, code: str, *, client_id: str | None = None, purpose: str = "sign_in") -> CodeCheck:
    """Check a second-factor code (TOTP or recovery), counted toward lockout before it is checked.

    A wrong code, or any code while the account is locked, records its audit event and fails. A
    right one is not spent here: `spending` spends it, and the caller runs it first in the
    transaction of what the code allows (store.writes.write_after), with `success` (the writes
    that settle its reservation and record it); so a write of that transaction that fails leaves
    the code (a recovery code: one of ten) usable for the next try. If `spending` changes no row,
    the code was spent meanwhile: the caller answers with refuse_spent. A code that finds the
    user's app removed since the caller looked (recovery codes go with it: no code could pass) is
    refused uncounted; one whose user was removed since (no row: nothing to count) is refused
    unaudited, not as locked.
    """
    try:
        reservation = lockout.reserve(user_id)
    except lockout.UserGone:  # removed meanwhile (`users remove`)
        return CodeCheck(None)
    if reservation is None:
        retry_after = lockout.seconds_left(user_id)
        audit.record("mfa_failed", user_id=user_id, client_id=client_id, detail={"reason": "locked", "for": purpose})
        db.session.commit()
        return CodeCheck(None, locked=True, retry_after=retry_after)
    normalized = normalize_code(code)
    spending = _spending(user_id, normalized)
    if spending is None and (refused := _uncounted_without_app(user_id, reservation)) is not None:
        return refused  # the app removed since the caller looked
    if spending is None:
        _record_bad_code(user_id, normalized, reservation, client_id=client_id, purpose=purpose)
        return CodeCheck(None, locked=reservation.locked, retry_after=current_app.config["LOCKOUT_SECONDS"])
    used = audit.event_write("mfa_used", user_id=user_id, client_id=client_id,
                             detail={"factor": _kind(normalized), "for": purpose})
    return CodeCheck(AMR_OTP, success=(lockout.settled(reservation), used), neutral=(lockout.released(reservation), used),
                     spending=spending, reservation=reservation, code=normalized, purpose=purpose)


def code_spent(check: CodeCheck) -> None:
    """After the caller's transaction spent a right code (check_code): count it."""
    metrics.count_mfa(_kind(check.code), "success")


def _uncounted_without_app(user_id: int, reservation: lockout.Reservation) -> CodeCheck | None:
    """A code's refusal that counts nothing, when the user's app is gone (`users mfa-reset`,
    another browser): its recovery codes went with it, so no code could pass any more, and a
    step that finds the removal before the check counts nothing either
    (web/second_factor.py: factors_removed_meanwhile). None while the app is there."""
    if has_totp(user_id):
        return None
    write(lockout.released(reservation))
    return CodeCheck(None)


def refuse_spent(user_id: int, check: CodeCheck, *, client_id: str | None = None) -> CodeCheck:
    """A right code whose spending changed no row (another request spent it first): refused as a
    wrong one, counted and audited. Unless the app, and its recovery codes with it, was removed
    meanwhile (`users mfa-reset`, another browser): then no code could pass any more, and its
    reservation is taken back, as a step that finds the removal before the check counts nothing
    (web/second_factor.py: factors_removed_meanwhile)."""
    if (refused := _uncounted_without_app(user_id, check.reservation)) is not None:
        return refused
    _record_bad_code(user_id, check.code, check.reservation, client_id=client_id, purpose=check.purpose)
    return CodeCheck(None, locked=check.reservation.locked, retry_after=current_app.config["LOCKOUT_SECONDS"])


def _signed_in_recently(auth_time: int | None) -> bool:
    """Whether a sign-in at `auth_time` was within MFA_RECENT_SECONDS."""
    return isinstance(auth_time, int) and now() - auth_time <= current_app.config["MFA_RECENT_SECONDS"]


def recently_verified(amr: str | list | None, auth_time: int | None) -> bool:
    """Whether a sign-in used a second factor (`mfa` in its methods) within MFA_RECENT_SECONDS:
    a session or token that may then change the password without a code."""
    methods = amr.split() if isinstance(amr, str) else list(amr or [])
    return AMR_MFA in methods and _signed_in_recently(auth_time)


def prove_recent_sign_in(user_id: int, auth_time: int | None) -> None:
    """A first second factor (an authenticator app, a passkey) for a user who has none needs a
    sign-in within MFA_RECENT_SECONDS, by any method; a user with a factor proves it instead
    (prove_second_factor). A passkey signs in alone and outlives a password change or reset, and
    an app keeps the owner out of their own sign-in: a session signed in long ago (a browser left
    open, a cookie taken) would otherwise give its holder a way in for good, or lock the owner
    out, without the password the password and address pages ask for. Checked where a ceremony
    starts (the app's secret, the passkey's options): its confirmation needs what the start kept.
    Raises SignInTooOld."""
    if _signed_in_recently(auth_time):
        return
    if not has_second_factor(user_id):
        raise SignInTooOld("adding a sign-in method needs a recent sign-in: sign in again")


#: what a change to the account needs besides the password (factor_to_prove)
CODE, PASSKEY = "code", "passkey"

#: what a user whose only second factor is a passkey is told: no code can stand for it
PASSKEY_ONLY = ("its second factor is a passkey, which no `otp` can stand for: sign in again with it "
                "(acr_values=mfa), then send the request again")
#: a code refused uncounted because the app was removed as it was checked (`users mfa-reset`,
#: another browser): what it asked may now need no code, or a passkey. The local API's words (after
#: "This account has a second factor: "); a page says it in its own (web/second_factor.FACTORS_CHANGED)
APP_REMOVED_AS_CHECKED = "its second factors changed while the code was checked: send the request again"


def factor_to_prove(user_id: int, *, recent_mfa: bool) -> str | None:
    """What a change to the account (password, address, a new factor) needs besides the password:
    nothing (None) without a second factor or after a recent sign-in with it (`recent_mfa`:
    recently_verified); else a code (CODE: from the app, or a recovery code) or, for a user whose
    only factor is a passkey, a new sign-in with it (PASSKEY: no code can stand for it)."""
    if recent_mfa or not has_second_factor(user_id):
        return None
    return CODE if has_totp(user_id) else PASSKEY


def _code_to_prove(user_id: int, *, recent_mfa: bool) -> bool:
    """Whether a code must be checked; SecondFactorRequired for a passkey-only user, whose code
    could never be right, so it is neither asked for nor counted toward the lockout."""
    factor = factor_to_prove(user_id, recent_mfa=recent_mfa)
    if factor == PASSKEY:
        raise SecondFactorRequired(PASSKEY_ONLY)
    return factor == CODE


def code_required(user_id: int, otp: str | None, *, recent_mfa: bool) -> bool:
    """Whether a password change must spend a code (`spend_code`): the user has a second factor
    and did not sign in with it recently. Without `otp` it raises SecondFactorRequired, before the
    password is looked at."""
    if not _code_to_prove(user_id, recent_mfa=recent_mfa):
        return False
    if not otp:
        raise SecondFactorRequired("send `otp` (a code from the authenticator app, or a recovery code), or sign in "
                                   "again with the second factor")
    return True


def spend_code(user_id: int, code: str, reservation: lockout.Reservation, *, client_id: str | None = None,
               purpose: str = "password_change", given_by: str | None = None) -> None:
    """Spend a TOTP or recovery code in the session's transaction, not committed: the change it
    allows commits it, and a change that fails rolls it back, so the code stays usable.

    The caller's reservation (of the password checked in the same request) counts the attempt
    toward lockout: a wrong code leaves it counted, and raises SecondFactorRequired (AccountLocked
    if that reservation set the lock). A code that finds the app removed since the caller looked
    (recovery codes go with it: no code could pass) is refused uncounted (APP_REMOVED_AS_CHECKED).
    """
    normalized = normalize_code(code)
    kind = _kind(normalized)
    spending = _spending(user_id, normalized)
    given = _code_given(given_by, purpose, normalized)
    if spending is not None and db.session.execute(*spending).rowcount == 1:
        metrics.count_mfa(kind, "success")
        audit.record("mfa_used", user_id=user_id, client_id=client_id, detail={"factor": kind, "for": purpose})
        if given is not None:
            account_tokens.spend_once(user_id, account_tokens.CODE_GIVEN, given,
                                      now() + current_app.config["MFA_RECENT_SECONDS"])
        return
    db.session.rollback()
    if given is not None and account_tokens.spent_until_later(account_tokens.CODE_GIVEN, given):
        # the same form sent again by the session whose first post spent the code: not a wrong code;
        # its attempt is taken back now, since the change may find nothing left to do (and roll back)
        write(lockout.released(reservation))
        return
    if _uncounted_without_app(user_id, reservation) is not None:  # the app removed since the caller looked
        raise SecondFactorRequired(APP_REMOVED_AS_CHECKED)
    _record_bad_code(user_id, normalized, reservation, client_id=client_id, purpose=purpose)
    if reservation.locked:
        raise AccountLocked(current_app.config["LOCKOUT_SECONDS"])
    raise SecondFactorRequired("the code in `otp` is not right, or was used already")


def _code_given(given_by: str | None, purpose: str, normalized_code: str) -> str | None:
    """What records that the browser session `given_by` (its cookie sid) gave this code for a change
    of `purpose`, or None: that session's same form sent again (a double click, a post the browser
    resends when the answer was lost) then finds the code spent by its own first post, and is
    answered as the first was, within MFA_RECENT_SECONDS, as after a recent sign-in with the factor."""
    return f"{purpose}:{given_by}:{normalized_code}" if given_by else None


def prove_second_factor(user_id: int, code: str | None, *, recent_mfa: bool, purpose: str,
                        given_by: str | None = None) -> None:
    """A new second factor (recovery codes, an app, a passkey) for a user who has one needs what a
    password change needs: a sign-in that used a second factor recently (`recent_mfa`:
    recently_verified), or a current code (`code`, TOTP or recovery; spent here). Else a session
    signed in with the password alone, before the user set up a factor, could give itself one
    for good. The browser session `given_by` (a page's: its cookie sid) may send the same form
    again with the code its first post spent (_code_given). Raises SecondFactorRequired
    (AccountLocked when the account is locked)."""
    if not _code_to_prove(user_id, recent_mfa=recent_mfa):
        return
    if not code:
        raise SecondFactorRequired("a recent sign-in with the second factor, or a code, is required")
    _spend_with_change(user_id, code, purpose=purpose, given_by=given_by)


def _spend_with_change(user_id: int, code: str, *, purpose: str, given_by: str | None = None) -> None:
    """Check a code, counted toward lockout before it is checked (check_code's rule), and spend it
    in the session's transaction, not committed: the change it allows commits it, and a change
    that fails rolls it back, so the code (a recovery code: one of ten) stays usable for the next
    try. Raises AccountLocked, SecondFactorRequired for a wrong or used code (spend_code), or
    NotFound (lockout.UserGone) for a user removed meanwhile, with nothing counted or audited."""
    reservation = lockout.reserve(user_id)
    if reservation is None:
        retry_after = lockout.seconds_left(user_id)
        audit.record("mfa_failed", user_id=user_id, detail={"reason": "locked", "for": purpose})
        db.session.commit()
        raise AccountLocked(retry_after)
    # the user's row before the code's, as the password and address changes and the second step
    # take them: two requests spending a code of the same user then queue, never wait on each other
    user_rows.lock_user_row(user_id)
    spend_code(user_id, code, reservation, purpose=purpose, given_by=given_by)
    db.session.execute(*lockout.settled(reservation))


# --- removal --------------------------------------------------------------------------------------


def _password_matches(user_id: int, password: str, *, purpose: str) -> bool:
    """Check the user's password, counted toward lockout and audited like every password check
    (`mfa_failed`, reason `bad_password` or `locked`). NotFound for a user removed, also meanwhile
    (lockout.UserGone: nothing counted or audited)."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    reservation = lockout.reserve(user_id)
    if reservation is None:
        retry_after = lockout.seconds_left(user_id)
        audit.record("mfa_failed", user_id=user_id, detail={"reason": "locked", "for": purpose})
        db.session.commit()
        raise AccountLocked(retry_after)
    if not verify_password(user.password_hash, normalize(password or "")):
        audit.record("mfa_failed", user_id=user_id, detail={"reason": "bad_password", "for": purpose})
        if lockout.commit_refusal(reservation):
            raise AccountLocked(current_app.config["LOCKOUT_SECONDS"])
        return False
    write(lockout.released(reservation))  # the code's own reservation settles the count
    return True


def remove_totp(user_id: int, password: str, code: str, *, given_by: str | None = None) -> None:
    """Remove the authenticator app and the recovery codes: needs the password and a current code
    (or a recovery code). The same form sent twice by the browser session `given_by` removes it
    once (prove_second_factor), and both are told it is removed."""
    if not has_totp(user_id):
        given = _code_given(given_by, "remove_factor", normalize_code(code))
        if given is not None and account_tokens.spent_until_later(account_tokens.CODE_GIVEN, given):
            return  # removed by this session's first post of the same form
        raise NotFound("no authenticator app is set up")
    if not _password_matches(user_id, password, purpose="remove_factor"):
        raise ValidationFailed({"password": ["The password is incorrect."]})
    try:
        _spend_with_change(user_id, code, purpose="remove_factor", given_by=given_by)  # committed with the removal
    except SecondFactorRequired:
        if not has_totp(user_id):  # removed meanwhile (another browser, `users mfa-reset`): uncounted (spend_code)
            raise NotFound("no authenticator app is set up") from None
        raise ValidationFailed({"code": ["That code is not right, or was used already."]}) from None
    if not store.delete_totp_and_codes(user_id):  # removed meanwhile, by the same form's other post
        db.session.rollback()
        return
    audit.record("mfa_disabled", user_id=user_id, detail={"factor": "totp"})
    db.session.commit()
    factors_changed(user_id)
    notifications.sign_in_method_changed(user_id, notifications.AUTHENTICATOR_REMOVED)


def reset_factors(user_id: int, *, by: str = "operator") -> bool:
    """Remove every second factor of a user (the operator's `users mfa-reset`); True if one was
    removed. A user without one: nothing is written, and no audit event (docs/cli.md).

    The user's row is taken first: a request of the user's that writes a factor (new recovery
    codes, an app confirmed) under that lock either commits before the reset reads the factors,
    which then go with the rest, or starts after it, and finds them gone."""
    user_rows.lock_user_row(user_id)
    had = has_second_factor(user_id)
    if had:
        store.delete_totp_and_codes(user_id)
        passkey_rows.remove_user_passkeys(user_id)
    # read after the deletes: a `users remove` committed before them is seen (it took the factors
    # with the user), and one committing later waits for this commit on the rows they hold
    if user_rows.password_version(user_id) is None:  # no such user
        db.session.rollback()
        raise NotFound("no such user")
    if not had:
        db.session.rollback()
        return False
    audit.record("mfa_reset", user_id=user_id, detail={"by": by, "had_factor": had})
    db.session.commit()
    factors_changed(user_id)
    return had
