"""The bearer cache's leases on user rows (services/bearer_cache.py says why they exist).

A worker that reuses a user's answer first writes a lease (`bearer_cached_until`); a password
change or removal asks whether one was taken lately before it waits them out.
"""

from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import User
from .connection import autocommit_connection

_TAKE_LEASE = (
    update(User)
    .where(User.subject == bindparam("sub"),
           (User.bearer_cached_until.is_(None)) | (User.bearer_cached_until < bindparam("until")))
    .values(bearer_cached_until=bindparam("until"))
)
_LEASED_SINCE = select(User.id).where(User.id == bindparam("id"), User.bearer_cached_until > bindparam("since"))


def take_lease(sub: str, until: float) -> None:
    """Extend the lease of the user with this subject to `until`, in a transaction of its own on
    a pooled connection, committed as durably as any other write (the autocommit connection may
    commit without waiting for the WAL flush: ROTATION_SYNCHRONOUS_COMMIT), so a database crash
    cannot forget a lease in use."""
    with db.engine.begin() as connection:
        connection.execute(_TAKE_LEASE, {"sub": sub, "until": until})


def leased_since(user_ids, since: float) -> bool:
    """Whether any of these users' leases ran past `since` (one read each, as committed)."""
    reader = autocommit_connection()
    return any(reader.first(_LEASED_SINCE, {"id": user_id, "since": since}) for user_id in user_ids)
