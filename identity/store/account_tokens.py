"""One-time account tokens as rows: store one, read it, consume it once, supersede the others.

Every function works in the session's transaction and leaves the commit to its caller (a
service), so consuming a token and the change it allows (a new password) commit together or
not at all. Consuming is one conditional UPDATE (`... WHERE used_at IS NULL AND expires_at >
now`): of two requests presenting the same link, exactly one changes the row.
"""

from collections import namedtuple

from sqlalchemy import bindparam, func, insert, select, update

from ..extensions import db
from ..models import AccountToken, User
from .writes import Write, insert_or_skip

_TOKENS = AccountToken.__table__
_FIELDS = ("token_hash", "purpose", "user_id", "email", "created_at", "expires_at")
_INSERT = insert(_TOKENS).values({name: bindparam(name) for name in _FIELDS})
_INSERT_USED = insert(_TOKENS).values({name: bindparam(name) for name in _FIELDS + ("used_at",)})
_FIND = select(_TOKENS.c.id, _TOKENS.c.user_id, _TOKENS.c.email, _TOKENS.c.created_at, _TOKENS.c.expires_at,
               _TOKENS.c.used_at).where(_TOKENS.c.token_hash == bindparam("token_hash"),
                                        _TOKENS.c.purpose == bindparam("purpose"))
TokenRow = namedtuple("TokenRow", [column.key for column in _FIND.selected_columns])
_ENDED_DISABLED_OWNER = (
    select(_TOKENS.c.user_id).join(User.__table__, User.__table__.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash"), _TOKENS.c.purpose == bindparam("purpose"),
           _TOKENS.c.used_at.is_not(None), User.__table__.c.enabled.is_(False))
)
_CONSUME = (
    update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("token_id"), _TOKENS.c.used_at.is_(None), _TOKENS.c.expires_at > bindparam("stamp"))
    .values(used_at=bindparam("stamp"))
)
_SUPERSEDE = (
    update(_TOKENS)
    .where(_TOKENS.c.user_id == bindparam("owner"), _TOKENS.c.purpose == bindparam("for_purpose"),
           _TOKENS.c.used_at.is_(None))
    .values(used_at=bindparam("stamp"))
)
_COUNT_SINCE = select(func.count()).select_from(_TOKENS).where(
    _TOKENS.c.user_id == bindparam("user_id"), _TOKENS.c.purpose == bindparam("purpose"),
    _TOKENS.c.created_at >= bindparam("since"))

_NEWEST = select(_TOKENS.c.email, _TOKENS.c.created_at).where(
    _TOKENS.c.user_id == bindparam("user_id"), _TOKENS.c.purpose == bindparam("purpose")
).order_by(_TOKENS.c.created_at.desc(), _TOKENS.c.id.desc()).limit(1)

_CREATED_SINCE = select(_TOKENS.c.created_at).where(
    _TOKENS.c.user_id == bindparam("user_id"), _TOKENS.c.purpose == bindparam("purpose"),
    _TOKENS.c.created_at >= bindparam("since")).order_by(_TOKENS.c.created_at.desc())


def insert_token(*, token_hash: str, purpose: str, user_id: int, email: str | None, created_at: int,
                 expires_at: int) -> None:
    """Store a new token (in the session's transaction)."""
    db.session.execute(_INSERT, {"token_hash": token_hash, "purpose": purpose, "user_id": user_id, "email": email,
                                 "created_at": created_at, "expires_at": expires_at})


def insert_spent(*, token_hash: str, purpose: str, user_id: int, stamp: int, expires_at: int) -> bool:
    """Store a token used as it is stored (a passkey ceremony's challenge), in the session's
    transaction: True, or False if one with this hash is there already (or being stored by a
    transaction not yet committed, which this one then waits for)."""
    statement = insert_or_skip(_TOKENS, ("token_hash",), _FIELDS + ("used_at",)).execution_options(preserve_rowcount=True)
    return db.session.execute(statement, {"token_hash": token_hash, "purpose": purpose, "user_id": user_id, "email": None,
                                          "created_at": stamp, "expires_at": expires_at, "used_at": stamp}).rowcount == 1


def spent_write(*, token_hash: str, purpose: str, user_id: int, stamp: int, expires_at: int) -> Write:
    """A token stored used as it is stored, as a plain INSERT for store.writes.write: a second one
    with this hash breaks the unique key and fails its whole transaction."""
    return _INSERT_USED, {"token_hash": token_hash, "purpose": purpose, "user_id": user_id, "email": None,
                          "created_at": stamp, "expires_at": expires_at, "used_at": stamp}


def find_token(token_hash: str, purpose: str) -> TokenRow | None:
    """The token with this hash and purpose, used or not, expired or not."""
    found = db.session.execute(_FIND, {"token_hash": token_hash, "purpose": purpose}).first()
    return None if found is None else TokenRow._make(found)


def ended_token_disabled_owner(token_hash: str, purpose: str) -> int | None:
    """The user id of the ended token with this hash and purpose if its account is disabled, else None."""
    return db.session.scalar(_ENDED_DISABLED_OWNER, {"token_hash": token_hash, "purpose": purpose})


def consume_token(token_id: int, stamp: int) -> bool:
    """Mark a token used if it is unused and unexpired at `stamp`; True for the one caller that did."""
    return db.session.execute(_CONSUME, {"token_id": token_id, "stamp": stamp}).rowcount == 1


def supersede_tokens(user_id: int, purpose: str, stamp: int) -> int:
    """End every unused token of this user and purpose (a newer one, or a password change, replaces them)."""
    return db.session.execute(_SUPERSEDE, {"owner": user_id, "for_purpose": purpose, "stamp": stamp}).rowcount


def count_tokens_since(user_id: int, purpose: str, since: int) -> int:
    """Tokens of this user and purpose made at or after `since` (each was one mail)."""
    return db.session.execute(_COUNT_SINCE, {"user_id": user_id, "purpose": purpose, "since": since}).scalar_one()


def created_since(user_id: int, purpose: str, since: int) -> list[int]:
    """When each token of this user and purpose made at or after `since` was made, newest first."""
    return list(db.session.execute(_CREATED_SINCE, {"user_id": user_id, "purpose": purpose, "since": since}).scalars())


def newest_token(user_id: int, purpose: str) -> tuple[str | None, int] | None:
    """The address and creation time of the user's newest token of `purpose` (used or not), or None."""
    found = db.session.execute(_NEWEST, {"user_id": user_id, "purpose": purpose}).first()
    return None if found is None else (found.email, found.created_at)
