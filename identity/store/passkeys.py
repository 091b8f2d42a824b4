"""Passkeys as rows: list a user's, find one by credential id, add, remove, and record a use.

A use is recorded by one conditional UPDATE (`record_use`): the sign count moves forward only
if the authenticator's new count is higher than the stored one (or both are 0, an authenticator
that keeps no count). Two requests carrying the same count cannot both win, whatever the
dialect, so a copied key is caught even when it races the original.
"""

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from ..extensions import db
from ..models import Passkey
from .connection import autocommit_connection

_PASSKEYS = Passkey.__table__
_COUNT = _PASSKEYS.c.sign_count
_NEW = bindparam("new_count")
_RECORD_USE = (
    update(_PASSKEYS)
    .where(_PASSKEYS.c.id == bindparam("passkey_id"),
           or_(_COUNT < _NEW, and_(_COUNT == 0, _NEW == 0)))
    .values(sign_count=_NEW, last_used_at=bindparam("stamp"))
)
_COUNT_OF_USER = select(func.count()).select_from(_PASSKEYS).where(_PASSKEYS.c.user_id == bindparam("user_id"))


def passkey_count(user_id: int) -> int:
    """How many passkeys the user has, as committed (every password sign-in asks: autocommit connection)."""
    row = autocommit_connection().first(_COUNT_OF_USER, {"user_id": user_id})
    return row[0] if row else 0


def remove_user_passkeys(user_id: int) -> int:
    """Remove all of a user's passkeys in the session's transaction; how many there were."""
    return db.session.execute(delete(Passkey).where(Passkey.user_id == user_id)).rowcount


def user_passkeys(user_id: int) -> list[Passkey]:
    """A user's passkeys, oldest first."""
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)))


def user_has_passkey(user_id: int, passkey_id: int) -> bool:
    """Whether the passkey with this id is the user's."""
    return db.session.scalar(select(Passkey.id).where(Passkey.id == passkey_id, Passkey.user_id == user_id)) is not None


def passkey_exists(passkey_id: int) -> bool:
    """Whether a passkey with this id exists, whoever owns it."""
    return db.session.scalar(select(Passkey.id).where(Passkey.id == passkey_id)) is not None


def passkey_by_credential_id(credential_id: str) -> Passkey | None:
    """The passkey with this credential id (base64url), whoever owns it."""
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


def add_passkey(passkey: Passkey) -> None:
    """Add a new passkey in the session's transaction (the unique credential id is checked at flush)."""
    db.session.add(passkey)
    db.session.flush()


def remove_passkey(user_id: int, passkey_id: int) -> bool:
    """Remove one of a user's passkeys in the session's transaction; False if it was not theirs."""
    return db.session.execute(delete(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id)).rowcount == 1


def record_use(passkey_id: int, new_count: int, stamp: int) -> bool:
    """Move a passkey's sign count to `new_count` and its last use to `stamp`, in the session's
    transaction, only if the count grows (or stays 0 on an authenticator without a counter).
    False means it did not: a stale count, the mark of a cloned authenticator."""
    params = {"passkey_id": passkey_id, "new_count": new_count, "stamp": stamp}
    return db.session.execute(_RECORD_USE, params).rowcount == 1
