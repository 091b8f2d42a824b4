"""The store's named operations on their own (either database): each single-use write wins once,
and the attempt counter counts, locks and refuses, whatever the dialect underneath."""

import pytest
from sqlalchemy import select, text

from identity.clock import now
from identity.extensions import db
from identity.models import AuthorizationCode, RefreshToken, User
from identity.store import issued_grants, lockout


@pytest.fixture
def alice_id(app, seeded):
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == "alice"))


def _code_values(alice_id, stamp):
    return {"code_hash": "h-code", "client_id": "mobile", "user_id": alice_id, "session_id": None,
            "redirect_uri": "https://app.example/cb", "response_type": "code", "scope": "openid offline_access",
            "nonce": None, "code_challenge": None, "code_challenge_method": None, "auth_time": stamp,
            "created_at": stamp, "expires_at": stamp + 60, "family_id": "fam-code", "front_channel_jti": None,
            "amr": "pwd otp mfa", "access_expires_at": None, "password_version": 1}


def test_the_nonce_replay_check_is_one_index_lookup(app, alice_id):
    """Seen before the (client_id, nonce) index: the plan walked ix_authorization_codes_expires_at,
    every code of the last 5 minutes (3.8 ms a sign-in at 10,500 codes, 35 sign-ins/s, on SQLite)."""
    with app.app_context():
        stamp = now()
        query = issued_grants.code_nonce_query("mobile", "n-1", stamp)
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(str(row) for row in db.session.execute(text("EXPLAIN QUERY PLAN " + sql)))
        else:
            # the codes of a busy five minutes, analyzed: on an empty table PostgreSQL's two index
            # scans cost the same and either may be chosen (seen when the columns became bigint)
            db.session.execute(text(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, response_type, scope, "
                "nonce, auth_time, created_at, expires_at, family_id) SELECT 'h-' || i, 'mobile', :user_id, "
                "'https://app.example/cb', 'code', 'openid', 'n-' || i, :stamp, :stamp, :stamp + 300, 'f-' || i "
                "FROM generate_series(2, 3001) AS i"), {"user_id": alice_id, "stamp": stamp})
            db.session.execute(text("ANALYZE authorization_codes"))
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in db.session.execute(text("EXPLAIN " + sql)))
        db.session.rollback()
    assert "ix_authorization_codes_client_nonce" in plan, plan


def test_a_code_is_consumed_once_with_its_first_refresh_token(app, alice_id):
    stamp = now()
    with app.test_request_context():
        issued_grants.insert_code(_code_values(alice_id, stamp))
        code = issued_grants.code_grant("h-code")
        assert (code.user_id, code.subject is not None, code.consumed_at) == (alice_id, True, None)
        successor = issued_grants.successor_values(code, "h-first", scope="openid offline_access", access_token_jti="jti-1",
                                            stamp=stamp, expires_at=stamp + 3600)
        assert issued_grants.consume_code(code.id, stamp=stamp, access_token_jti="jti-1", successor=successor) is True
        assert issued_grants.consume_code(code.id, stamp=stamp, access_token_jti="jti-2", successor=successor) is False
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == "h-code"))
        assert (row.consumed_at, row.issued_jti) == (stamp, "jti-1")
        tokens = list(db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == "fam-code")))
        assert [(t.token_hash, t.access_token_jti) for t in tokens] == [("h-first", "jti-1")]
        assert tokens[0].amr == "pwd otp mfa"  # the sign-in's methods go on with the family


def test_a_refresh_token_rotates_once(app, alice_id):
    stamp = now()
    with app.test_request_context():
        issued_grants.add_refresh_token(token_hash="h-old", family_id="fam-r", client_id="mobile", user_id=alice_id,
                                 session_id=None, scope="openid offline_access", auth_time=stamp,
                                 access_token_jti="jti-0", issued_at=stamp, expires_at=stamp + 3600)
        db.session.commit()
        old = issued_grants.refresh_grant("h-old")
        values = issued_grants.successor_values(old, "h-new", scope=old.scope, access_token_jti="jti-1", stamp=stamp,
                                         expires_at=stamp + 3600)
        assert issued_grants.rotate_refresh_token(old.id, values, with_successor=True) is True
        again = issued_grants.successor_values(old, "h-other", scope=old.scope, access_token_jti="jti-2", stamp=stamp,
                                        expires_at=stamp + 3600)
        assert issued_grants.rotate_refresh_token(old.id, again, with_successor=True) is False
        assert issued_grants.family_access_token_jtis(["fam-r"], stamp) == {"jti-0", "jti-1"}
    with app.app_context():
        rows = {t.token_hash: t for t in db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == "fam-r"))}
        assert set(rows) == {"h-old", "h-new"}
        assert rows["h-old"].consumed_at == stamp and rows["h-new"].consumed_at is None


def test_a_refresh_token_consumed_without_successor(app, alice_id):
    stamp = now()
    with app.test_request_context():
        issued_grants.add_refresh_token(token_hash="h-last", family_id="fam-l", client_id="mobile", user_id=alice_id,
                                 session_id=None, scope="openid", auth_time=stamp, access_token_jti=None,
                                 issued_at=stamp, expires_at=stamp + 3600)
        db.session.commit()
        old = issued_grants.refresh_grant("h-last")
        values = issued_grants.successor_values(old, None, scope="openid", access_token_jti=None, stamp=stamp,
                                         expires_at=stamp + 3600)
        assert issued_grants.rotate_refresh_token(old.id, values, with_successor=False) is True
        assert issued_grants.rotate_refresh_token(old.id, values, with_successor=False) is False
    with app.app_context():
        assert db.session.scalar(select(RefreshToken.consumed_at).where(RefreshToken.token_hash == "h-last")) == stamp
        assert db.session.scalar(select(db.func.count()).select_from(RefreshToken)
                                 .where(RefreshToken.family_id == "fam-l")) == 1


def test_sign_in_attempts_count_lock_and_refuse(app, alice_id):
    stamp = now()
    with app.test_request_context():
        counted = [lockout.record_sign_in_attempt(alice_id, stamp=stamp, limit=3, lock_until=stamp + 300)
                   for _ in range(4)]
    assert [tuple(row) if row else None for row in counted] == [(1, 0), (2, 0), (0, stamp + 300), None]
    with app.app_context():
        user = db.session.get(User, alice_id)
        assert (user.failed_attempts, user.locked_until) == (0, stamp + 300)
