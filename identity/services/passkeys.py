"""Passkeys (WebAuthn, with py_webauthn): register them, sign in with them, list and remove them.

Every ceremony is bound to the issuer: the RP id is the issuer's host and the expected origin
its scheme, host and port, so a passkey made for another site (or an assertion made there) does
not verify here. A ceremony is two calls: `*_options` gives the browser its options and the
caller a `state` to keep (the web layer keeps it in the signed session cookie and passes it
back once: popped; it expires after CHALLENGE_SECONDS), and the second call verifies the
browser's answer against that state. A copy of the cookie can bring the state back, so an
assertion's challenge is also spent in the database (account_tokens.PASSKEY_CHALLENGE) by the
answer that signs in with it: the same answer sent again with the old cookie is refused.

The sign count: py_webauthn is given 0 as the stored count, so it verifies the signature
first, and the count is judged after, by one conditional UPDATE (store/passkeys.py). A count
that does not grow, from an authenticator that keeps one, is a cloned key: refused and audited.
Only a correctly signed assertion can be judged a clone, so no stranger can fill the audit log
with clone alarms for someone's credential id.

amr (RFC 8176): `swk` for a key that may be synced off its device (the backup-eligible flag,
BE, set), `hwk` for one bound to its authenticator (BE clear).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..errors import NotFound, PasskeyRefused
from ..extensions import db
from ..models import Passkey, User
from ..store import accounts as user_rows
from ..store import passkeys as store
from ..store.writes import write
from . import account_tokens, audit, browser_sessions, lockout, metrics, mfa, notifications
from .accounts import SignInResult, pending_spent_until
from .browser_sessions import SessionUser
from .login_names import browser_origin, name_characters_problem

if TYPE_CHECKING:
    from webauthn.helpers.structs import CredentialDeviceType, PublicKeyCredentialDescriptor


@lru_cache(maxsize=1)
def _webauthn() -> SimpleNamespace:
    """py_webauthn, imported on the first ceremony: with its ASN.1, CBOR and pyOpenSSL parts it
    is about 5 MiB and 0.1 s that a worker serving only tokens and sign-ins never needs."""
    from webauthn import (base64url_to_bytes, generate_authentication_options, generate_registration_options,
                          options_to_json, verify_authentication_response, verify_registration_response)
    from webauthn.helpers import (bytes_to_base64url, parse_authentication_credential_json,
                                  parse_registration_credential_json)
    # every error of the library (a response that does not verify, a malformed one, backup flags
    # no authenticator may set) derives from WebAuthnException
    from webauthn.helpers.exceptions import InvalidJSONStructure, WebAuthnException
    from webauthn.helpers.structs import (AuthenticatorSelectionCriteria, AuthenticatorTransport, CredentialDeviceType,
                                          PublicKeyCredentialDescriptor, ResidentKeyRequirement,
                                          UserVerificationRequirement)

    return SimpleNamespace(**locals())


CHALLENGE_SECONDS = 120  # a ceremony's challenge is accepted this long after its options
TIMEOUT_MS = 60_000  # how long the browser waits for the person (a hint in the options)
MAX_NAME = 100
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn's credentialIdLength; its base64url fits passkeys.credential_id
MAX_CREDENTIAL_JSON = 16 * 1024

NOT_VERIFIED = "The passkey could not be verified. Try again, or use another way to sign in."
EXPIRED = "The passkey request expired. Try again."
LOCKED = "Too many wrong attempts: the account is temporarily locked. Try again later."
CLONED = "This passkey was refused: its use counter went backwards, a sign that it was copied. Use another way to sign in."


@dataclass(frozen=True)
class RelyingParty:
    """Who the browser's passkeys are bound to: this issuer."""

    id: str  # the issuer's host
    origin: str  # the issuer's scheme://host[:port]

    @classmethod
    def of(cls, issuer: str) -> "RelyingParty":
        """The issuer's host and origin as a browser writes them in clientDataJSON (RFC 6454's
        serialization): lower case, an international host in its IDNA form, no default port.
        The issuer as written ("https://Bücher.example:443") matched no browser's answer."""
        return cls(*browser_origin(issuer))


@dataclass(frozen=True)
class Ceremony:
    """The options for the browser (JSON text) and the state the server keeps until the answer."""

    options: str
    state: dict


@dataclass(frozen=True)
class PasskeyUse:
    """A verified passkey assertion: whose key, and how it authenticated (amr)."""

    user_id: int
    passkey_id: int
    method: str  # "hwk" or "swk"
    user_verified: bool


def _state(purpose: str, challenge: bytes, user_id: int | None = None) -> dict:
    return {"purpose": purpose, "challenge": _webauthn().bytes_to_base64url(challenge), "user_id": user_id,
            "expires_at": now() + CHALLENGE_SECONDS}


def _challenge(state: dict | None, purpose: str, user_id: int | None = None) -> bytes:
    """The challenge of a kept ceremony state, if it is this ceremony's and still fresh."""
    if not isinstance(state, dict) or state.get("purpose") != purpose or state.get("user_id") != user_id:
        raise PasskeyRefused(EXPIRED)
    if not isinstance(state.get("expires_at"), int) or state["expires_at"] < now():
        raise PasskeyRefused(EXPIRED)
    try:
        return _webauthn().base64url_to_bytes(state["challenge"])
    except Exception:
        raise PasskeyRefused(EXPIRED) from None


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    wa = _webauthn()
    transports = []
    for name in passkey.transports.split():
        try:
            transports.append(wa.AuthenticatorTransport(name))
        except ValueError:
            pass  # a transport this library does not know: a hint only
    return wa.PublicKeyCredentialDescriptor(id=wa.base64url_to_bytes(passkey.credential_id),
                                            transports=transports or None)


def _method(device_type: CredentialDeviceType) -> str:
    return "swk" if device_type == _webauthn().CredentialDeviceType.MULTI_DEVICE else "hwk"


def _checked_json(credential_json: str) -> str:
    if not isinstance(credential_json, str) or not credential_json or len(credential_json) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused(NOT_VERIFIED)
    return credential_json


# --- listing and removal ---------------------------------------------------------------------


def list_passkeys(user_id: int) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    return store.user_passkeys(user_id)


def has_passkey(user_id: int) -> bool:
    return bool(store.user_passkeys(user_id))


def ensure_users_passkey(user_id: int, passkey_id: int) -> None:
    """NotFound unless the passkey is the user's: checked before a removal asks for a code, so
    no code (a recovery code is single-use) is spent on a passkey that is not there. The refusal
    is audited (`passkey_removal_refused`, reason `not_yours` or `no_such_passkey`): passkey ids
    are small integers, so naming another user's is an access-control probe."""
    if not store.user_has_passkey(user_id, passkey_id):
        reason = "not_yours" if store.passkey_exists(passkey_id) else "no_such_passkey"
        audit.record("passkey_removal_refused", user_id=user_id, detail={"passkey_id": passkey_id, "reason": reason})
        db.session.commit()
        raise NotFound("no such passkey")


def remove_passkey(user_id: int, passkey_id: int) -> None:
    """Remove one of the user's passkeys; NotFound if it is not theirs."""
    if not store.remove_passkey(user_id, passkey_id):
        db.session.rollback()
        raise NotFound("no such passkey")
    audit.record("passkey_removed", user_id=user_id, detail={"passkey_id": passkey_id})
    db.session.commit()
    mfa.factors_changed(user_id)
    notifications.sign_in_method_changed(user_id, notifications.PASSKEY_REMOVED)


# --- registration ----------------------------------------------------------------------------


def registration_options(user_id: int, issuer: str) -> Ceremony:
    """Options to create a passkey for this user: resident (discoverable) key, user
    verification preferred, the user's registered passkeys excluded."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    rp = RelyingParty.of(issuer)
    challenge = secrets.token_bytes(32)
    wa = _webauthn()
    options = wa.generate_registration_options(
        rp_id=rp.id,
        rp_name=current_app.config["PRODUCT_NAME"],
        user_id=user.subject.encode(),  # the random subject, never the row id
        user_name=user.username,
        user_display_name=user.name or user.username,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=wa.AuthenticatorSelectionCriteria(
            resident_key=wa.ResidentKeyRequirement.REQUIRED,  # a passkey: usable without a user name
            user_verification=wa.UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(p) for p in store.user_passkeys(user_id)],
    )
    return Ceremony(wa.options_to_json(options), _state("register", challenge, user_id))


ALREADY_REGISTERED = "This passkey is already registered."


def registered_already(user_id: int, credential_json) -> bool:
    """Whether a registration answer is of a passkey the user has already: the same answer sent
    again once it succeeded (a retry of a response that was lost), which the second-factor rule
    would refuse as a session adding a factor without one. Read without verifying the answer: a
    match can only name the user's own passkey, which tells them nothing."""
    wa = _webauthn()
    try:
        raw_id = wa.parse_registration_credential_json(_checked_json(credential_json)).raw_id
    except (PasskeyRefused, wa.WebAuthnException, ValueError, TypeError, KeyError, RecursionError):
        return False
    passkey = store.passkey_by_credential_id(wa.bytes_to_base64url(raw_id))
    return passkey is not None and passkey.user_id == user_id


def register(user_id: int, issuer: str, state: dict | None, credential_json: str, name: str = "") -> Passkey:
    """Verify the browser's new credential against the kept state and store it for the user.

    Refused: a stale or foreign state, an answer for another origin or RP id, a credential id
    already registered (to this user or anyone else), a name with control characters or
    text-direction marks (as a user's name: login_names; PostgreSQL refuses a NUL in a text).
    """
    challenge = _challenge(state, "register", user_id)
    problem = name_characters_problem(name or "")
    if problem:
        raise PasskeyRefused(problem)
    rp = RelyingParty.of(issuer)
    wa = _webauthn()
    try:
        credential = wa.parse_registration_credential_json(_checked_json(credential_json))
        verified = wa.verify_registration_response(credential=credential, expected_challenge=challenge,
                                                   expected_rp_id=rp.id, expected_origin=rp.origin)
    except (wa.WebAuthnException, ValueError, TypeError, KeyError, RecursionError) as err:  # json: deep nesting
        audit.record("passkey_registration_failed", user_id=user_id, detail={"reason": str(err)})
        db.session.commit()
        raise PasskeyRefused(NOT_VERIFIED) from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        # WebAuthn §7.1 step 23: fail a longer one (its base64url no longer fits the column:
        # SQLite stored it, PostgreSQL refused it with a 503)
        audit.record("passkey_registration_failed", user_id=user_id,
                     detail={"reason": f"credential id longer than {MAX_CREDENTIAL_ID_BYTES} bytes"})
        db.session.commit()
        raise PasskeyRefused(NOT_VERIFIED)
    credential_id = wa.bytes_to_base64url(verified.credential_id)
    existing = store.passkey_by_credential_id(credential_id)
    if existing is not None:
        audit.record("passkey_registration_failed", user_id=user_id,
                     detail={"reason": "credential id already registered",
                             "other_user": existing.user_id != user_id})
        db.session.commit()
        raise PasskeyRefused(ALREADY_REGISTERED)
    first = mfa.first_factor_locked(user_id)
    count = len(store.user_passkeys(user_id))
    passkey = Passkey(
        user_id=user_id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        # the browser's report, unsigned: py_webauthn keeps each known name as often as it is
        # sent, and 40 of them no longer fit the column (SQLite stored them, PostgreSQL a 503)
        transports=" ".join(dict.fromkeys(t.value for t in (credential.response.transports or []))),
        backup_eligible=verified.credential_device_type == wa.CredentialDeviceType.MULTI_DEVICE,
        aaguid=verified.aaguid or "",
        name=(name or "").strip()[:MAX_NAME] or f"Passkey {count + 1}",
        created_at=now(),
    )
    try:
        store.add_passkey(passkey)
    except IntegrityError:  # registered by a concurrent request meanwhile
        db.session.rollback()
        if store.passkey_by_credential_id(credential_id) is None:
            raise  # not registered meanwhile: the database refused the row (503), and the person may try again
        raise PasskeyRefused("This passkey is already registered.") from None
    if first:
        mfa.end_changes_asked_without_a_factor(user_id)
    audit.record("passkey_registered", user_id=user_id,
                 detail={"passkey_id": passkey.id, "method": _method(verified.credential_device_type)})
    db.session.commit()
    if first:
        mfa.factors_changed(user_id)
    notifications.sign_in_method_changed(user_id, notifications.PASSKEY_ADDED)
    return passkey


# --- authentication --------------------------------------------------------------------------


def authentication_options(issuer: str, user_id: int | None = None) -> Ceremony:
    """Options to sign in with a passkey. Without a user (the passwordless first factor) any
    discoverable passkey of this site may answer, and the person must be verified on the
    authenticator (PIN or biometrics); for a known user (the second factor) only their passkeys,
    with verification preferred."""
    rp = RelyingParty.of(issuer)
    challenge = secrets.token_bytes(32)
    allowed = [_descriptor(p) for p in store.user_passkeys(user_id)] if user_id is not None else None
    wa = _webauthn()
    options = wa.generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=TIMEOUT_MS, allow_credentials=allowed,
        user_verification=(wa.UserVerificationRequirement.PREFERRED if user_id is not None
                           else wa.UserVerificationRequirement.REQUIRED),
    )
    return Ceremony(wa.options_to_json(options), _state("authenticate", challenge, user_id))


def authenticate(issuer: str, state: dict | None, credential_json: str, *, user_id: int,
                 client_id: str | None = None) -> PasskeyUse:
    """Verify a passkey assertion as the user's second factor and record its use (committed).

    The passkey must be this user's. Raises PasskeyRefused (a cloned key is audited as
    `passkey_clone_detected`).
    """
    use = _verify(issuer, state, credential_json, user_id=user_id, client_id=client_id)
    db.session.commit()
    metrics.count_mfa("webauthn", "success")
    return use


def sign_in(issuer: str, state: dict | None, credential_json: str, *,
            client_id: str | None = None) -> tuple[PasskeyUse, SignInResult]:
    """Sign in with a passkey alone (the passwordless first factor) and start a browser session,
    in one transaction with the recorded use. The passkey names its user; the authenticator must
    have verified the person (PIN or biometrics), so the sign-in is two factors in one gesture.
    """
    use = _verify(issuer, state, credential_json, user_id=None, client_id=client_id)
    user = db.session.get(User, use.user_id)
    if user is None or not user.enabled:  # `users disable`: refused as an unknown passkey is, and audited
        _refuse_stored(use.user_id, client_id, "disabled" if user is not None else "no_such_user")
    amr = f"{use.method} {mfa.AMR_MFA}"  # user verification was required: two factors in one
    session, insert = browser_sessions.new_session(user.id, amr=amr, password_version=user.password_version,
                                                   client_id=client_id)
    _store_session(insert, user.id, client_id)
    audit.record("sign_in", user_id=user.id, client_id=client_id, detail={"method": use.method, "amr": amr})
    principal = SessionUser.of(user)  # read before the commit: a `users remove` then leaves no row to read
    db.session.commit()
    metrics.count_mfa("webauthn", "success")
    return use, _started(principal, session, amr)


def finish_sign_in(issuer: str, state: dict | None, credential_json: str, user: SessionUser, *, pending_id: str,
                   amr: str = mfa.AMR_PASSWORD, client_id: str | None = None) -> tuple[PasskeyUse, SignInResult]:
    """The second step with a passkey: after a right password, one of the user's passkeys (user
    verification preferred, not required: the password was the other factor). It counts toward
    the lockout like a code (mfa.check_code), and a right one resets the count (one refused as the
    user's last factor is removed counts nothing); the session's
    methods are `amr` plus the passkey's (`hwk` or `swk`) and `mfa`. The half-finished sign-in's
    `pending_id` is spent with the session (accounts.spend_pending_write)."""
    try:
        reservation = lockout.reserve(user.id)
    except lockout.UserGone:  # removed meanwhile (`users remove`): the page then finds no factor,
        raise PasskeyRefused(LOCKED) from None  # and says the sign-in ended
    if reservation is None:
        audit.record("mfa_failed", user_id=user.id, client_id=client_id, detail={"reason": "locked", "factor": "passkey"})
        db.session.commit()
        raise PasskeyRefused(LOCKED)
    try:
        use = _verify(issuer, state, credential_json, user_id=user.id, client_id=client_id)
    except PasskeyRefused:
        if not mfa.has_second_factor(user.id):
            # the factors removed as it was checked (`users mfa-reset`, another browser): no passkey
            # could pass any more, so nothing is counted, as for a code (mfa.refuse_spent)
            write(lockout.released(reservation))
        elif reservation.locked:  # the attempt that reached the limit set the lock, as a wrong code does
            lockout.commit_refusal(reservation)
        raise
    methods = mfa.amr_with_second_factor(amr, use.method)
    session, insert = browser_sessions.new_session(user.id, amr=methods, password_version=user.password_version,
                                                   client_id=client_id)
    db.session.execute(*lockout.settled(reservation))
    _store_session(insert, user.id, client_id)
    if not account_tokens.spend_once(user.id, account_tokens.PENDING_SIGN_IN, pending_id, pending_spent_until()):
        _refuse_stored(user.id, client_id, "finished_already")
    audit.record("sign_in", user_id=user.id, client_id=client_id, detail={"amr": methods})
    db.session.commit()
    metrics.count_mfa("webauthn", "success")
    metrics.count_sign_in("success")  # the password's check counted nothing: this step decided
    return use, _started(user, session, methods)


def _store_session(insert, user_id: int, client_id: str | None) -> None:
    """Store the sign-in's new session in the transaction; if the user was disabled or their
    password changed since the sign-in read them (browser_sessions.new_session), roll the
    transaction back (the passkey's use too), audit and refuse."""
    if db.session.execute(*insert).rowcount != 1:
        _refuse_stored(user_id, client_id, "changed_meanwhile")


def _refuse_stored(user_id: int, client_id: str | None, reason: str):
    """Roll back a sign-in that cannot be stored (the passkey's use too), audit and refuse."""
    db.session.rollback()
    audit.record("passkey_sign_in_failed", user_id=user_id, client_id=client_id, detail={"reason": reason})
    db.session.commit()
    raise PasskeyRefused(NOT_VERIFIED)


def _started(user: SessionUser, session: "browser_sessions.NewSession", amr: str) -> SignInResult:
    return SignInResult(user, sid=session.sid, auth_time=session.auth_time, public_sid=session.public_sid, amr=amr)


def _verify(issuer: str, state: dict | None, credential_json: str, *, user_id: int | None,
            client_id: str | None) -> PasskeyUse:
    """Verify an assertion against the kept state and record the use, uncommitted on success
    (a failure is counted in the metrics here; a success by the caller, once its use commits: a
    use rolled back, say a disabled user's sign-in, is none).

    With `user_id` the passkey must be that user's; without, it names its user, and user
    verification is required.
    """
    try:
        use = _verify_assertion(issuer, state, credential_json, user_id=user_id, client_id=client_id)
    except PasskeyRefused:
        metrics.count_mfa("webauthn", "failure")
        raise
    return use


def _verify_assertion(issuer: str, state: dict | None, credential_json: str, *, user_id: int | None,
                      client_id: str | None) -> PasskeyUse:
    challenge = _challenge(state, "authenticate", user_id)
    rp = RelyingParty.of(issuer)
    wa = _webauthn()
    try:
        credential = wa.parse_authentication_credential_json(_checked_json(credential_json))
    # WebAuthnException: a field that is not base64url (non-ASCII) is InvalidAuthenticationResponse
    except (wa.WebAuthnException, ValueError, TypeError, KeyError, RecursionError):  # json: deep nesting
        raise PasskeyRefused(NOT_VERIFIED) from None
    passkey = store.passkey_by_credential_id(wa.bytes_to_base64url(credential.raw_id))
    if passkey is None or (user_id is not None and passkey.user_id != user_id):
        _failed(user_id, client_id, "unknown passkey" if passkey is None else "another user's passkey")
    user = db.session.get(User, passkey.user_id)
    if user is None:  # removed since its passkey was read above (`users remove`): its passkeys went with it
        _failed(user_id, client_id, "unknown passkey")
    handle = credential.response.user_handle
    if handle is not None and handle != user.subject.encode():
        _failed(passkey.user_id, client_id, "user handle does not match")
    try:
        verified = wa.verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=0,  # judged below, after the signature (module docstring)
            require_user_verification=user_id is None,
        )
    except (wa.WebAuthnException, ValueError, TypeError, KeyError) as err:  # InvalidBackupFlags too
        _failed(passkey.user_id, client_id, str(err))
    passkey_id, owner, stored_count = passkey.id, passkey.user_id, passkey.sign_count
    # the user's row before the passkey's, in the order a factor's removal, `users mfa-reset` and
    # `users remove` (whose cascade reaches the passkey) take them: the second step writes the
    # user's row next, and either sign-in then stores rows that refer to it (the challenge, the session)
    user_rows.lock_user_row(owner)
    if not store.record_use(passkey_id, verified.new_sign_count, now()):
        db.session.rollback()
        if not store.passkey_exists(passkey_id):
            # removed since it was read above (by its owner, `users mfa-reset`): unknown now, as it
            # is to a sign-in that reads it after the removal; no counter went backwards
            _failed(owner, client_id, "unknown passkey")
        if account_tokens.spent(account_tokens.PASSKEY_CHALLENGE, state["challenge"]):
            # this very answer signed in already (sent twice: a double click, a retry), and its count
            # is the one it stored: a replay, refused as such, not a copy of the key
            _failed(owner, client_id, "challenge used already")
        audit.record("passkey_clone_detected", user_id=owner, client_id=client_id,
                     detail={"passkey_id": passkey_id, "stored_count": stored_count,
                             "presented_count": verified.new_sign_count})
        db.session.commit()
        raise PasskeyRefused(CLONED)
    # the state came back in the signed cookie, which a replay can send again with the same
    # answer (a passkey without a counter signs the same count): the challenge is spent here
    if not account_tokens.spend_once(owner, account_tokens.PASSKEY_CHALLENGE, state["challenge"], state["expires_at"]):
        _failed(owner, client_id, "challenge used already")
    method = _method(verified.credential_device_type)
    audit.record("passkey_used", user_id=owner, client_id=client_id,
                 detail={"passkey_id": passkey_id, "method": method, "user_verified": verified.user_verified})
    return PasskeyUse(owner, passkey_id, method, verified.user_verified)


def _failed(user_id: int | None, client_id: str | None, reason: str):
    db.session.rollback()
    audit.record("passkey_sign_in_failed", user_id=user_id, client_id=client_id, detail={"reason": reason})
    db.session.commit()
    raise PasskeyRefused(NOT_VERIFIED)
