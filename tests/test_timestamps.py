"""Times after 2038-01-19 (2**31 - 1 epoch seconds): every timestamp column holds them.

They were PostgreSQL INTEGERs, so from 2038 every write of a time failed ('integer out of range',
a 503), and from 2028 a 10-year refresh token's expiry did. e7a2c9d4b6f1 made them BIGINT
(identity/models/wide_integers.py); SQLite's INTEGER was 64 bits already.
"""

import time

import pytest
from sqlalchemy import text

from actions import AuthActions, OAuthActions
from identity.extensions import db
from test_migration_sessions import scratch_uri  # noqa: F401  (a fixture)
from test_upgrade_review import password_grant, refresh

#: 2039-09-10, past what a 32-bit column holds
AFTER_2038 = 2_200_000_000
_INT4_MAX = 2**31 - 1


@pytest.fixture
def after_2038(monkeypatch):
    """The whole process's clock (identity/clock.py, the JWTs' times, the signed cookies') moved on
    to AFTER_2038 plus the time since the test began."""
    real = time.time
    start = real()
    monkeypatch.setattr(time, "time", lambda: AFTER_2038 + (real() - start))


def test_sign_ins_tokens_and_refreshes_work_after_2038(app, client, flow_clients, after_2038):
    """A password grant (a refresh token, a session), two rotations, a browser sign-in and the
    code flow, all in 2039: each answers, and what each stored carries its 2039 time."""
    grant = password_grant(client)
    for _ in range(2):
        response = refresh(client, grant["refresh_token"])
        assert response.status_code == 200, response.get_data(as_text=True)
        grant = response.get_json()
    assert AuthActions(client).login().status_code == 302
    token, _params = OAuthActions(client).code_flow(client_id="spa")
    assert token.status_code == 200, token.get_data(as_text=True)
    account = client.get("/localapi/account", headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert account.status_code == 200, account.get_data(as_text=True)
    with app.app_context():
        for table, column in (("refresh_tokens", "issued_at"), ("refresh_tokens", "expires_at"),
                              ("authorization_codes", "created_at"), ("user_sessions", "last_seen_at"),
                              ("audit_events", "at")):
            assert db.session.scalar(text(f"SELECT max({column}) FROM {table}")) > _INT4_MAX, (table, column)


def test_the_timestamp_migration_goes_both_ways(scratch_uri):
    """e7a2c9d4b6f1: on PostgreSQL every timestamp column becomes bigint and takes a time past
    2038; the downgrade makes them integer again (once no such time is stored). On SQLite it
    changes nothing."""
    from app import create_app
    from conftest import make_config
    from flask_migrate import downgrade, upgrade
    from test_migration_sessions import _migrate, _rows, _run

    on_postgresql = scratch_uri.startswith("postgresql")
    types = ("SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
             "AND table_name = 'refresh_tokens' AND column_name IN ('issued_at', 'expires_at', 'revoked_at')")
    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, "5c5208cca771")
    _run(app, "INSERT INTO audit_events (at, event, detail) VALUES (1, 'before', '{}')")
    if on_postgresql:
        assert sorted(_rows(app, types)) == [("integer",)] * 3
    _migrate(app, upgrade, "e7a2c9d4b6f1")
    _run(app, f"INSERT INTO audit_events (at, event, detail) VALUES ({AFTER_2038}, 'after', '{{}}')")
    assert sorted(_rows(app, "SELECT at, event FROM audit_events")) == [(1, "before"), (AFTER_2038, "after")]
    if on_postgresql:
        assert sorted(_rows(app, types)) == [("bigint",)] * 3
    _run(app, "DELETE FROM audit_events WHERE event = 'after'")
    _migrate(app, downgrade, "5c5208cca771")
    if on_postgresql:
        assert sorted(_rows(app, types)) == [("integer",)] * 3
    assert _rows(app, "SELECT at, event FROM audit_events") == [(1, "before")]
    _migrate(app, upgrade, "e7a2c9d4b6f1")
    with app.app_context():
        db.engine.dispose()
