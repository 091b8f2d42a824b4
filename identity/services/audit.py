"""The audit log of security events; the caller's transaction commits it."""

from flask import has_request_context, request
from sqlalchemy import bindparam, insert, select

from ..clock import now
from ..extensions import db
from ..models import AuditEvent
from .writes import Write

# A plain INSERT, built once: events are only ever appended, so the ORM's unit of work (and its
# flush at commit) buys nothing on the sign-in path, where it cost more than the statement.
_FIELDS = ("at", "event", "user_id", "client_id", "ip", "detail")
_INSERT_EVENT = insert(AuditEvent.__table__).values({name: bindparam(name) for name in _FIELDS})


def event_write(event: str, *, user_id: int | None = None, client_id: str | None = None,
                detail: dict | None = None) -> Write:
    """An event as a write for writes.write, to be kept with the caller's other writes."""
    ip = request.remote_addr if has_request_context() else None
    return _INSERT_EVENT, {"at": now(), "event": event, "user_id": user_id, "client_id": client_id, "ip": ip,
                           "detail": detail or {}}


def record(event: str, *, user_id: int | None = None, client_id: str | None = None, detail: dict | None = None) -> None:
    """Write an event in the caller's transaction; it is kept with the caller's commit."""
    db.session.execute(*event_write(event, user_id=user_id, client_id=client_id, detail=detail))


def tail(limit: int = 20) -> list[AuditEvent]:
    rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return list(reversed(list(rows)))
