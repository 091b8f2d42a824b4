"""Migration a7c4e2d9b153 on existing data: sessions get a public id and a last-seen time, and
codes and refresh tokens stop naming sessions by the cookie's identifier; and back.

Runs on a database of its own: a fresh SQLite file, or a fresh schema of the PostgreSQL
database the suite uses."""

import hashlib
import os
import time
import uuid

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, text

from app import create_app
from conftest import make_config
from identity.services.schema import MIGRATIONS_DIR, _logging_kept, attach_migrate
from identity.extensions import db

BEFORE = "3b1f0c2d9a47"
THIS = "a7c4e2d9b153"


@pytest.fixture
def scratch_uri(tmp_path):
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if not uri:
        yield "sqlite:///" + str(tmp_path / "migrate.db")
        return
    schema = "mig_" + uuid.uuid4().hex[:12]
    engine = create_engine(uri)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield uri + ("&" if "?" in uri else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def _migrate(app, action, revision):
    with app.app_context():
        attach_migrate(app)
        with _logging_kept():
            action(directory=MIGRATIONS_DIR, revision=revision)
        db.session.remove()


def _rows(app, sql):
    with app.app_context():
        with db.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]


def _run(app, sql, **params):
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(sql), params)


def test_upgrade_gives_sessions_public_ids_and_renames_grant_session_ids_and_back(scratch_uri):
    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, BEFORE)
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
              "password_changed_at, failed_attempts, locked_until, created_at) "
              "VALUES (1, 'sub-1', 'alice', 'alice', 'x', 1, 100, 0, 0, 100)")
    for row_id, sid in ((1, "cookie-one"), (2, "cookie-two")):
        _run(app, "INSERT INTO user_sessions (id, sid, user_id, auth_time, created_at) VALUES (:id, :sid, 1, 100, 100)",
             id=row_id, sid=sid)
    _run(app, "INSERT INTO authorization_codes (code_hash, client_id, user_id, session_id, redirect_uri, response_type, "
              "scope, auth_time, created_at, expires_at, family_id) "
              "VALUES ('h1', 'spa', 1, 'cookie-one', 'x', 'code', 'openid', 100, 100, 400, 'f1'), "
              "('h2', 'spa', 1, 'cookie-gone', 'x', 'code', 'openid', 100, 100, 400, 'f2')")
    _run(app, "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, session_id, scope, issued_at, expires_at) "
              "VALUES ('r1', 'f1', 'spa', 1, 'cookie-two', 'openid', 100, 999)")

    upgraded_at = int(time.time())
    _migrate(app, upgrade, THIS)
    sessions = dict((sid, (public, seen)) for sid, public, seen in
                    _rows(app, "SELECT sid, public_sid, last_seen_at FROM user_sessions"))
    one, two = sessions["cookie-one"][0], sessions["cookie-two"][0]
    assert len({one, two, "cookie-one", "cookie-two"}) == 4 and len(one) >= 32
    assert all(upgraded_at <= seen <= time.time() for _, seen in sessions.values())  # no one idle by the upgrade
    codes = dict(_rows(app, "SELECT code_hash, session_id FROM authorization_codes"))
    assert codes == {"h1": one, "h2": None}  # a session that is gone names nothing
    assert _rows(app, "SELECT session_id FROM refresh_tokens") == [(two,)]

    _migrate(app, downgrade, BEFORE)
    assert dict(_rows(app, "SELECT code_hash, session_id FROM authorization_codes")) == {"h1": "cookie-one", "h2": None}
    assert _rows(app, "SELECT session_id FROM refresh_tokens") == [("cookie-two",)]
    with app.app_context():
        db.engine.dispose()


def test_upgrade_keeps_sessions_under_a_digest_of_their_cookie_id_and_the_downgrade_ends_them(scratch_uri):
    """b8d4f1a6c3e9: the table keeps the SHA-256 of each cookie's session id. Sessions that were
    live before the upgrade stay signed in under their cookie; the downgrade, which cannot give
    the ids back, ends them."""
    from identity.services import browser_sessions

    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, "f6c2a8e4b0d7")
    stamp = int(time.time())
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
              "password_changed_at, failed_attempts, locked_until, created_at) VALUES (7, 's', 'bob', 'bob', 'x', 1, 0, 0, 0, 0)")
    for sid, revoked_at in (("cookie-live", None), ("cookie-ended", 100)):
        _run(app, "INSERT INTO user_sessions (sid, public_sid, user_id, auth_time, created_at, last_seen_at, revoked_at) "
                  "VALUES (:sid, :public, 7, :t, :t, :t, :revoked)", sid=sid, public="public-" + sid, t=stamp,
             revoked=revoked_at)

    _migrate(app, upgrade, "b8d4f1a6c3e9")
    stored = dict(_rows(app, "SELECT public_sid, sid FROM user_sessions"))
    assert stored == {"public-" + sid: hashlib.sha256(sid.encode()).hexdigest() for sid in ("cookie-live", "cookie-ended")}
    with app.app_context():
        assert browser_sessions.load_session("cookie-live").user.id == 7
        assert browser_sessions.load_session("cookie-ended") is None

    _migrate(app, downgrade, "f6c2a8e4b0d7")
    revoked = dict(_rows(app, "SELECT public_sid, revoked_at FROM user_sessions"))
    assert revoked["public-cookie-ended"] == 100 and stamp <= revoked["public-cookie-live"] <= time.time()
    with app.app_context():
        db.engine.dispose()
