"""API scope rows: the lock a client's write takes on the scopes it allows, against their removal,
and the lock a change of one scope takes."""

from sqlalchemy import select, update

from ..extensions import db
from ..models import ApiScope
from .connection import autocommit_connection
from .row_locks import RowLock

_SCOPES = ApiScope.__table__
_SCOPE_LOCK = RowLock(_SCOPES, _SCOPES.c.name)


def lock_api_scope_row(name: str) -> None:
    """Make the session's transaction the only one changing (or removing) this API scope until it
    ends (row_locks.py), as lock_client_row does for a client. Take it before reading the scope."""
    _SCOPE_LOCK(name)


def lock_api_scopes(names) -> set[str]:
    """Keep the API scopes of these names from being removed until the session's transaction ends,
    and return those that exist. Take it before checking a client's allowed scopes and writing the
    client: `scopes remove` checks, after its DELETE, that no client allows the scope; without the
    lock both could commit, leaving a client allowed a scope removed (and granted again by a later
    `scopes add` of the name). PostgreSQL: FOR KEY SHARE on the rows (the DELETE waits for the
    commit; clients naming the same scope do not wait for each other). SQLite has no row locks: an
    UPDATE that changes nothing takes the database's write lock."""
    names = sorted(set(names))
    if not names:
        return set()
    if autocommit_connection().is_sqlite:
        db.session.execute(update(_SCOPES).where(_SCOPES.c.name.in_(names)).values(id=_SCOPES.c.id))
        return set(db.session.scalars(select(_SCOPES.c.name).where(_SCOPES.c.name.in_(names))))
    return set(db.session.scalars(select(_SCOPES.c.name).where(_SCOPES.c.name.in_(names))
                                  .with_for_update(read=True, key_share=True)))
