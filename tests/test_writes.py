"""writes.write: the sign-in path's statements run as one transaction, on either database."""

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from identity.extensions import db
from identity.models import AuditEvent
from identity.services import audit
from identity.store.writes import write


def test_statements_are_written_together_with_json_values(app):
    with app.app_context():  # the caller's address comes as an argument (services read no request)
        counts = write(audit.event_write("probe_one", user_id=3, detail={"why": ["a", 1]}, ip="203.0.113.7"),
                       audit.event_write("probe_two", ip="203.0.113.7"))
    assert counts == [1, 1]
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [(r.event, r.user_id, r.detail, r.ip) for r in rows] == [
        ("probe_one", 3, {"why": ["a", 1]}, "203.0.113.7"), ("probe_two", None, {}, "203.0.113.7")]


def test_a_failing_statement_undoes_the_others(app):
    with app.test_request_context():
        with pytest.raises(IntegrityError):
            write(audit.event_write("probe_undone"), audit.event_write(None))  # event is NOT NULL
        write(audit.event_write("probe_after"))  # the connection is usable again
    with app.app_context():
        assert [e.event for e in db.session.scalars(select(AuditEvent))] == ["probe_after"]
