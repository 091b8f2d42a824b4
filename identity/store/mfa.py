"""Second factors as rows: the authenticator app (TOTP) and the recovery codes.

The reads that the sign-in makes for every user (has the user a factor?) run on the autocommit
connection; the uses of a code are conditional UPDATEs, so two requests with the same code
cannot both win (writes.write_if). Page actions (enrol, regenerate, remove) run in the session's
transaction, committed by the service.
"""

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update

from ..extensions import db
from ..models import Passkey, RecoveryCode, TotpFactor
from .connection import autocommit_connection
from .writes import Write

_TOTP = TotpFactor.__table__
_CODES = RecoveryCode.__table__
_PASSKEYS = Passkey.__table__  # a passkey is a second factor too (services/passkeys.py)



def second_factor_exists(user_id):
    """The SQL condition "this user has a second factor" (a confirmed authenticator app or a
    passkey), for a user id column or parameter: one expression, so the bearer check's read can
    carry it too."""
    return or_(exists().where(_TOTP.c.user_id == user_id, _TOTP.c.confirmed_at.is_not(None)),
               exists().where(_PASSKEYS.c.user_id == user_id))


_HAS_SECOND_FACTOR = select(second_factor_exists(bindparam("user_id")))
_TOTP_ROW = select(_TOTP.c.secret_encrypted, _TOTP.c.confirmed_at, _TOTP.c.last_step).where(
    _TOTP.c.user_id == bindparam("user_id"))
_UNUSED_CODES = select(func.count()).select_from(_CODES).where(
    _CODES.c.user_id == bindparam("user_id"), _CODES.c.used_at.is_(None))
_UNUSED_CODE_HASH = select(_CODES.c.code_hash).where(
    _CODES.c.user_id == bindparam("user_id"), _CODES.c.used_at.is_(None)).limit(1)
# a step is accepted once: only a newer one than the last accepted moves it on. (Parameters are
# not named like columns: the session would add such a key to the UPDATE's SET on PostgreSQL.)
_ACCEPT_STEP = (update(_TOTP)
                .where(_TOTP.c.user_id == bindparam("owner"), _TOTP.c.confirmed_at.is_not(None),
                       _TOTP.c.last_step < bindparam("step"))
                .values(last_step=bindparam("step")))
_SPEND_CODE = (update(_CODES)
               .where(_CODES.c.user_id == bindparam("owner"), _CODES.c.code_hash == bindparam("spent_hash"),
                      _CODES.c.used_at.is_(None))
               .values(used_at=bindparam("stamp")))


def has_second_factor(user_id: int) -> bool:
    """Whether the user has a second factor (as committed)."""
    row = autocommit_connection().first(_HAS_SECOND_FACTOR, {"user_id": user_id})
    return bool(row and row[0])


def totp_row(user_id: int) -> tuple[str, int | None, int] | None:
    """(secret_encrypted, confirmed_at, last_step) of the user's TOTP row, or None."""
    return autocommit_connection().first(_TOTP_ROW, {"user_id": user_id})


def unused_recovery_codes(user_id: int) -> int:
    row = autocommit_connection().first(_UNUSED_CODES, {"user_id": user_id})
    return row[0] if row else 0


def unused_recovery_code_hash(user_id: int) -> str | None:
    """The stored hash of one of the user's unused recovery codes (its salt is its set's), or None."""
    row = autocommit_connection().first(_UNUSED_CODE_HASH, {"user_id": user_id})
    return row[0] if row else None


def accept_step(user_id: int, step: int) -> Write:
    """The conditional write that accepts a TOTP time step newer than the last accepted one."""
    return _ACCEPT_STEP, {"owner": user_id, "step": step}


def spend_recovery_code(user_id: int, code_hash: str, stamp: int) -> Write:
    """The conditional write that uses an unused recovery code (one row, or none)."""
    return _SPEND_CODE, {"owner": user_id, "spent_hash": code_hash, "stamp": stamp}


def encrypted_totp_secrets() -> list:
    """(user_id, secret_encrypted) of every authenticator app, pending ones too: what `keys
    reencrypt` moves under the first KEY_ENCRYPTION_KEY along with the signing keys."""
    return list(db.session.execute(select(_TOTP.c.user_id, _TOTP.c.secret_encrypted).order_by(_TOTP.c.user_id)))


def replace_totp_secret(user_id: int, new: str, *, if_still: str) -> Write:
    """The write that stores a user's secret anew (encrypted), if it is still the one read (an
    enrolment restarted meanwhile keeps its own, already under the first key)."""
    return (update(_TOTP).where(_TOTP.c.user_id == user_id, _TOTP.c.secret_encrypted == if_still)
            .values(secret_encrypted=new)), {}


def put_pending_totp(user_id: int, secret_encrypted: str, stamp: int) -> None:
    """Start (or restart) an enrolment: an unconfirmed row with this secret, in the session's
    transaction. A confirmed factor is left alone (the service refuses first)."""
    db.session.execute(delete(_TOTP).where(_TOTP.c.user_id == user_id, _TOTP.c.confirmed_at.is_(None)))
    db.session.execute(insert(_TOTP).values(user_id=user_id, secret_encrypted=secret_encrypted, created_at=stamp,
                                            confirmed_at=None, last_step=0))


def confirm_totp(user_id: int, step: int, stamp: int) -> bool:
    """Confirm the pending enrolment with the step of its first code, in the session's transaction."""
    result = db.session.execute(update(_TOTP).where(_TOTP.c.user_id == user_id, _TOTP.c.confirmed_at.is_(None))
                                .values(confirmed_at=stamp, last_step=step))
    return result.rowcount == 1


def replace_recovery_codes(user_id: int, code_hashes: list[str], stamp: int) -> None:
    """Drop the user's recovery codes, used or not, and store these, in the session's transaction."""
    db.session.execute(delete(_CODES).where(_CODES.c.user_id == user_id))
    if code_hashes:
        db.session.execute(insert(_CODES), [{"user_id": user_id, "code_hash": h, "created_at": stamp, "used_at": None}
                                            for h in code_hashes])


def delete_totp_and_codes(user_id: int) -> int:
    """Remove the user's authenticator app and recovery codes, in the session's transaction; the
    number of TOTP rows removed (0 or 1)."""
    removed = db.session.execute(delete(_TOTP).where(_TOTP.c.user_id == user_id)).rowcount
    db.session.execute(delete(_CODES).where(_CODES.c.user_id == user_id))
    return removed
