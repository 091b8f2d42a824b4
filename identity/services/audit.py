"""The audit log of security events; the caller's transaction commits it."""

from flask import has_request_context, request
from sqlalchemy import select

from ..clock import now
from ..extensions import db
from ..models import AuditEvent


def record(event: str, *, user_id: int | None = None, client_id: str | None = None, detail: dict | None = None) -> None:
    """Add an event to the session; it is written with the caller's commit."""
    ip = request.remote_addr if has_request_context() else None
    db.session.add(AuditEvent(at=now(), event=event, user_id=user_id, client_id=client_id, ip=ip, detail=detail or {}))


def tail(limit: int = 20) -> list[AuditEvent]:
    rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return list(reversed(list(rows)))
