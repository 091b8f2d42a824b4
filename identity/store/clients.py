"""Client rows: the lock an operator's change of one client takes."""

from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import Client
from .connection import autocommit_connection

_CLIENTS = Client.__table__
_LOCK_ROW = select(_CLIENTS.c.id).where(_CLIENTS.c.client_id == bindparam("locked_client")).with_for_update(key_share=True)
_TAKE_WRITE_LOCK = update(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("locked_client")).values(id=_CLIENTS.c.id)


def lock_client_row(client_id: str) -> None:
    """Make the session's transaction the only one changing this client until it ends, as
    accounts.lock_user_row does for a user: on PostgreSQL the row's lock (FOR NO KEY UPDATE, so
    tokens issued to it meanwhile are not held off), on SQLite the database's write lock (an
    UPDATE that changes nothing). Take it before reading the client."""
    if autocommit_connection().is_sqlite:
        db.session.execute(_TAKE_WRITE_LOCK, {"locked_client": client_id})
    else:
        db.session.execute(_LOCK_ROW, {"locked_client": client_id})
