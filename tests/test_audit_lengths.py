"""Audit metadata never breaks or undoes the write it describes (issue 15): every length the
audit table bounds is bounded in one place (services/audit.py), so a sign-in whose return URL
names a 201-character client_id is still counted, on PostgreSQL (String(200) is enforced) as on SQLite.
"""

from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from actions import AuthActions
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import audit

LONG_CLIENT_ID = "c" * 201


def test_every_column_of_an_event_is_bounded(app):
    with app.app_context():
        statement, values = audit.event_write("e" * 80, user_id=1, client_id="x" * 5000, ip="9" * 100,
                                              detail={"reason": "r" * 5000, "list": ["s" * 900] * 500,
                                                      "nested": {"deep": "d" * 900}, "n": 3})
    for column in AuditEvent.__table__.columns:
        if getattr(column.type, "length", None) and values.get(column.name) is not None:
            assert len(values[column.name]) <= column.type.length, column.name
    assert values["client_id"].startswith("xxx") and values["event"].startswith("eee")
    detail = values["detail"]
    assert len(detail["reason"]) <= audit.MAX_DETAIL_TEXT and len(detail["list"]) <= audit.MAX_DETAIL_ITEMS
    assert all(len(item) <= audit.MAX_DETAIL_TEXT for item in detail["list"])
    assert len(detail["nested"]["deep"]) <= audit.MAX_DETAIL_TEXT and detail["n"] == 3


def test_an_event_with_long_metadata_is_stored(app):
    with app.test_request_context():
        audit.record("sign_in_failed", client_id="y" * 300, detail={"reason": "z" * 3000})
        db.session.commit()
        row = db.session.scalar(select(AuditEvent))
        assert row.client_id == "y" * 200 and len(row.detail["reason"]) <= audit.MAX_DETAIL_TEXT


def _failures(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))


@pytest.mark.parametrize("password", ["wrong-password-123", "tulip-quartz-harbor-917"])
def test_a_sign_in_whose_return_url_names_a_201_character_client_is_counted(client, app, seeded, password):
    return_url = "/connect/authorize?" + urlencode({"client_id": LONG_CLIENT_ID, "response_type": "code",
                                                   "scope": "openid", "redirect_uri": "https://x.test/cb"})
    response = AuthActions(client).login(password=password, return_url=return_url)
    body = response.get_data(as_text=True)
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(["sign_in", "sign_in_failed"]))))
    if password.startswith("wrong"):
        assert response.status_code == 400, body
        assert _failures(app) == 1
        assert [row.event for row in rows] == ["sign_in_failed"]
    else:
        assert response.status_code == 302, body
        assert _failures(app) == 0
        assert [row.event for row in rows] == ["sign_in"]
    assert rows[0].client_id == LONG_CLIENT_ID[:200]
