"""The audit log of security events; the caller's transaction commits it.

An event carries the address of the caller it was recorded for. This module does not read it
from a request: the web layer supplies it (`caller_ip`, set for each request by
identity/web/caller.py), and a caller may pass `ip` itself; outside a request (a command) it is None.
"""

from contextvars import ContextVar

from sqlalchemy import bindparam, insert, select

from ..clock import now
from ..extensions import db
from ..models import AuditEvent
from ..store.accounts import STILL_SIGNED_IN, still_user
from ..store.writes import Write, insert_if

# A plain INSERT, built once: events are only ever appended, so the ORM's unit of work (and its
# flush at commit) buys nothing on the sign-in path, where it cost more than the statement.
_FIELDS = ("at", "event", "user_id", "client_id", "ip", "detail")
_INSERT_EVENT = insert(AuditEvent.__table__).values({name: bindparam(name) for name in _FIELDS})
_INSERT_EVENT_IF_STILL = insert_if(AuditEvent.__table__, _FIELDS, STILL_SIGNED_IN)  # a sign-in's (event_write)

#: The address of the caller whose request this thread is serving (None between requests).
caller_ip: ContextVar[str | None] = ContextVar("identity_audit_caller_ip", default=None)


# Every length an event can carry is bounded here, and only here: the values come from requests
# (a return URL's client_id, a remote address), and an event too long for its column would fail
# the transaction that records it, on PostgreSQL, which enforces String(n). An event only
# describes a write; it must never break or undo it.
_COLUMNS = AuditEvent.__table__.c
_LENGTHS = {name: _COLUMNS[name].type.length for name in ("event", "client_id", "ip")}
MAX_DETAIL_TEXT = 200  # characters of each text in `detail`
MAX_DETAIL_ITEMS = 50  # entries of each list or mapping in `detail`
_MAX_DETAIL_DEPTH = 4


def _cut(value, length: int):
    return value[:length] if isinstance(value, str) else value


def _bounded(value, depth: int = 0):
    """A copy of a detail value with every text, list and mapping cut to its bound."""
    if isinstance(value, str):
        return value[:MAX_DETAIL_TEXT]
    if depth >= _MAX_DETAIL_DEPTH and isinstance(value, (dict, list, tuple)):
        return "..."
    if isinstance(value, dict):
        return {str(key)[:MAX_DETAIL_TEXT]: _bounded(item, depth + 1)
                for key, item in list(value.items())[:MAX_DETAIL_ITEMS]}
    if isinstance(value, (list, tuple)):
        return [_bounded(item, depth + 1) for item in value[:MAX_DETAIL_ITEMS]]
    return value


def event_write(event: str, *, user_id: int | None = None, client_id: str | None = None,
                detail: dict | None = None, ip: str | None = None, password_version: int | None = None) -> Write:
    """An event as a write for writes.write, to be kept with the caller's other writes (bounded).
    `ip` defaults to the address of the request being served (`caller_ip`). With
    `password_version`, a sign-in's event: written only while the user is enabled with that
    password version, as its session is (store/browser_sessions.py)."""
    if ip is None:
        ip = caller_ip.get()
    values = {"at": now(), "event": _cut(event, _LENGTHS["event"]), "user_id": user_id,
              "client_id": _cut(client_id, _LENGTHS["client_id"]), "ip": _cut(ip, _LENGTHS["ip"]),
              "detail": _bounded(detail) if detail else {}}
    if password_version is None:
        return _INSERT_EVENT, values
    return _INSERT_EVENT_IF_STILL, {**values, **still_user(user_id, password_version)}


def record(event: str, *, user_id: int | None = None, client_id: str | None = None, detail: dict | None = None,
           ip: str | None = None) -> None:
    """Write an event in the caller's transaction; it is kept with the caller's commit."""
    db.session.execute(*event_write(event, user_id=user_id, client_id=client_id, detail=detail, ip=ip))


def tail(limit: int = 20) -> list[AuditEvent]:
    rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit))
    return list(reversed(list(rows)))
