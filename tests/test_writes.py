"""writes.write: the sign-in path's statements run as one transaction, on either database."""

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import audit
from identity.store import accounts as user_rows
from identity.store.writes import write, write_after


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


@pytest.mark.parametrize("session_in_a_transaction", [False, True], ids=["on its own", "in the session's"])
def test_a_row_lock_taken_first_leaves_the_writes_as_they_were(app, seeded, session_in_a_transaction):
    """write_after's `locked_first` (PostgreSQL: a SELECT ... FOR NO KEY UPDATE before the
    writes, on the durable connection or in the session's transaction; SQLite: nothing) changes
    neither what is written nor the counts returned."""
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
        if session_in_a_transaction:
            db.session.get(User, alice)
        renamed = (update(User).where(User.id == bindparam("renamed")).values(name="Alice Probe"), {"renamed": alice})
        counts = write_after(renamed, audit.event_write("probe_then", user_id=alice),
                             locked_first=user_rows.user_row_lock(alice))
    assert counts == [1]
    with app.app_context():
        assert db.session.get(User, alice).name == "Alice Probe"
        assert [e.event for e in db.session.scalars(select(AuditEvent).where(AuditEvent.user_id == alice))] == ["probe_then"]
