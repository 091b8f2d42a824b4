"""A user whose account keeps more codes or sessions than one statement takes parameters.

PostgreSQL's protocol takes at most 65,535 parameters in a statement (psycopg refuses more:
'number of parameters must be between 0 and 65535'); SQLite takes what its build allows. A
monitoring account that signs in through the code flow every second keeps 86,400 codes a day
(CODE_TOMBSTONE_SECONDS), so a user's every family, code or session must never go to the
database as a list of values. Each test builds its rows with one multi-row INSERT and runs on
whichever database the suite runs on. On PostgreSQL it then ANALYZEs the tables, as autovacuum
does for a table that grows to that size over a day: planned on the statistics of the empty
table the suite's database last had, the user's 66,000 codes are one row, and a nested loop that
scans them again for each of them runs into the statement timeout."""

import pytest
from sqlalchemy import func, insert, select, text, update

from identity import clock
from identity.extensions import db
from identity.models import AuthorizationCode, Client, LogoutDelivery, RevokedAccessToken, SessionClient, User, UserSession
from identity.services import issued_grants

PAST_THE_PARAMETER_LIMIT = 66_000


@pytest.fixture
def app_config():
    # no deliverer thread: the logout tokens queued stay in the queue, to be counted
    return {"BACKCHANNEL_LOGOUT_POLL_SECONDS": 0}


def _alice(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == "alice"))


def _many_redeemed_codes(app, user_id: int, stamp: int, client_id: str = "spa") -> None:
    """Codes of the user's, each redeemed (an access token issued) and kept as a tombstone."""
    with app.app_context():
        db.session.execute(insert(AuthorizationCode), [
            {"code_hash": f"{i:064x}", "client_id": client_id, "user_id": user_id, "session_id": None,
             "redirect_uri": "http://127.0.0.1:8080/callback", "response_type": "code", "scope": "openid",
             "nonce": None, "code_challenge": None, "code_challenge_method": None, "auth_time": stamp,
             "created_at": stamp, "expires_at": stamp + 60, "consumed_at": stamp, "family_id": f"family-{i}",
             "issued_jti": f"jti-{i}", "front_channel_jti": None, "access_expires_at": stamp + 3600, "amr": "pwd"}
            for i in range(PAST_THE_PARAMETER_LIMIT)])
        db.session.commit()
        _analyze("authorization_codes")


def _many_live_sessions(app, user_id: int, stamp: int) -> None:
    """Unrevoked browser sessions of the user's (a probe that signs in and drops its cookie), the
    first of which issued to the `web` client (back-channel logout)."""
    with app.app_context():
        db.session.execute(insert(UserSession), [
            {"sid": f"{i:064x}", "public_sid": f"public-{i}", "user_id": user_id, "auth_time": stamp,
             "created_at": stamp, "last_seen_at": stamp, "revoked_at": None, "client_id": None, "user_agent": None,
             "ip_address": None, "amr": "pwd"} for i in range(PAST_THE_PARAMETER_LIMIT)])
        db.session.execute(insert(SessionClient), [{"session_id": "public-0", "client_id": "web", "created_at": stamp}])
        db.session.commit()
        _analyze("user_sessions")


def _analyze(table: str) -> None:
    """What autovacuum does on PostgreSQL once a table has grown (the module's docstring)."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text(f"ANALYZE {table}"))
            conn.commit()


def _count(app, model, *conditions) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def test_signing_out_everywhere_revokes_the_tokens_of_more_codes_than_a_statement_takes(app, runner, seeded):
    # `sessions end USER` revokes the access token of every code the account still keeps
    alice = _alice(app)
    _many_redeemed_codes(app, alice, clock.now())
    result = runner.invoke(args=["sessions", "end", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert _count(app, RevokedAccessToken) == PAST_THE_PARAMETER_LIMIT


def test_revoking_an_app_with_more_codes_than_a_statement_takes(app, seeded):
    # the grants page's revocation of one app lists every family the user has with it
    alice = _alice(app)
    _many_redeemed_codes(app, alice, clock.now())
    with app.app_context():
        issued_grants.revoke_user_client_grants(alice, "spa")
        db.session.commit()
    assert _count(app, RevokedAccessToken) == PAST_THE_PARAMETER_LIMIT


def test_a_password_set_for_a_user_with_more_sessions_than_a_statement_takes(app, runner, seeded, flow_clients):
    # a password set (or change, or the user disabled) tells the clients of every live session
    alice = _alice(app)
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web")
                           .values(backchannel_logout_uri="https://web.example/backchannel-logout"))
        db.session.commit()
    _many_live_sessions(app, alice, clock.now())
    result = runner.invoke(args=["users", "set-password", "alice"], input="copper-lantern-orchard-73\n")
    assert result.exit_code == 0, result.output
    assert _count(app, UserSession, UserSession.revoked_at.is_(None)) == 0
    assert _count(app, LogoutDelivery, LogoutDelivery.client_id == "web",
                  LogoutDelivery.session_id == "public-0") == 1
