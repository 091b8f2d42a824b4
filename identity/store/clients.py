"""Client rows: the lock an operator's change of one client takes."""

from ..models import Client
from .row_locks import RowLock

_CLIENTS = Client.__table__
_CLIENT_LOCK = RowLock(_CLIENTS, _CLIENTS.c.client_id)


def lock_client_row(client_id: str) -> None:
    """Make the session's transaction the only one changing this client until it ends (row_locks.py),
    as accounts.lock_user_row does for a user: tokens issued to it meanwhile are not held off on
    PostgreSQL. Take it before reading the client."""
    _CLIENT_LOCK(client_id)
