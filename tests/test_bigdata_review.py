"""A large installation's data: pages, commands and endpoints driven against tables an operator
of 200,000 users and a year of unpurged rows has. Rows are bulk-inserted (one multi-row INSERT,
then ANALYZE on PostgreSQL, as tests/test_users_past_the_parameter_limit.py does), as small as
shows each defect."""

import pytest
import json

from sqlalchemy import func, insert, select, text

from identity import clock
from identity.extensions import db
from identity.models import RefreshToken, RevokedAccessToken, SessionClient, User, UserSession
from conftest import postgresql_only
from test_cli_operators import basic
from test_localapi_support import CHEAP_ARGON2
from test_sessions_devices import LEGACY_BASIC, by_kind, password_grant, sessions_of


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


def _analyze(table: str) -> None:
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text(f"ANALYZE {table}"))
            conn.commit()


def _user_id(app, username: str = "alice") -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def _sessions(app, user_id: int, count: int, *, created_at: int, last_seen_at: int, prefix: str) -> None:
    with app.app_context():
        db.session.execute(insert(UserSession), [
            {"sid": f"{prefix}{i:060x}", "public_sid": f"{prefix}-{i}", "user_id": user_id, "auth_time": created_at,
             "created_at": created_at, "last_seen_at": last_seen_at, "revoked_at": None, "client_id": None,
             "user_agent": None, "ip_address": None, "amr": "pwd"} for i in range(count)])
        db.session.commit()
        _analyze("user_sessions")


def test_the_sessions_listing_is_not_emptied_by_sessions_past_their_absolute_lifetime(app, client, flow_clients):
    # a user whose devices are in daily use: 100 sessions seen a minute ago but signed in past
    # SESSION_ABSOLUTE_SECONDS (ended: the next request signs them out), and 3 live ones seen an hour ago
    stamp = clock.now()
    alice = _user_id(app)
    absolute = app.config["SESSION_ABSOLUTE_SECONDS"]
    _sessions(app, alice, 100, created_at=stamp - absolute - 3600, last_seen_at=stamp - 60, prefix="a")
    _sessions(app, alice, 3, created_at=stamp - 3600, last_seen_at=stamp - 3600, prefix="b")
    token = password_grant(client)["access_token"]
    browsers = by_kind(sessions_of(client, token), "browser")
    # docs/sessions.md: at most 100 entries of each kind, the most recently used (of the live ones)
    assert sorted(e["id"] for e in browsers) == sorted(f"browser_b-{i}" for i in range(3)), \
        f"{len(browsers)} browser sessions listed of the 3 live ones"


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_the_operators_purge_removes_every_session_client_of_a_backlog_of_ended_sessions(app, runner, seeded):
    # a year never purged: more ended sessions than one batch takes, the later ones having signed
    # in to apps (session_clients rows, removed once their session is gone)
    app.config["PURGE_BATCH_SIZE"] = 5
    stamp = clock.now()
    alice = _user_id(app)
    ended = stamp - app.config["SESSION_ABSOLUTE_SECONDS"] - 3600
    _sessions(app, alice, 5, created_at=ended, last_seen_at=ended, prefix="a")
    _sessions(app, alice, 5, created_at=ended, last_seen_at=ended, prefix="b")
    with app.app_context():
        db.session.execute(insert(SessionClient), [{"session_id": f"b-{i}", "client_id": "spa", "created_at": ended}
                                                   for i in range(5)])
        db.session.commit()
        _analyze("session_clients")
    result = runner.invoke(args=["purge", "--json"])
    assert result.exit_code == 0, result.output
    removed = json.loads(result.output)
    assert (removed["user_sessions"], _count(app, UserSession)) == (10, 0), result.output
    # docs/cli.md: purge removes everything due; a session's clients are due once it is gone
    assert (removed["session_clients"], _count(app, SessionClient)) == (5, 0), \
        f"{_count(app, SessionClient)} session_clients rows of purged sessions left by purge: {result.output}"


#: more than PostgreSQL takes parameters in one statement (65,535)
PAST_THE_PARAMETER_LIMIT = 66_000


@pytest.mark.parametrize("marks", [pytest.param(None, marks=postgresql_only())])
def test_revoking_a_grant_refreshed_more_times_in_a_day_than_a_statement_takes_parameters(app, client, flow_clients,
                                                                                          marks):
    # a device that refreshes about every second: one family, 66,000 rotations within the day the
    # access tokens they came with may live, each rotated token kept until it expires (purge)
    tokens = password_grant(client)
    stamp = clock.now()
    with app.app_context():
        live = db.session.scalars(select(RefreshToken)).one()
        values = {c.key: getattr(live, c.key) for c in RefreshToken.__table__.columns if c.key != "id"}
        db.session.execute(insert(RefreshToken), [
            {**values, "token_hash": f"{i:064x}", "access_token_jti": f"rotated-{i}", "issued_at": stamp - 3600,
             "consumed_at": stamp - 3600} for i in range(PAST_THE_PARAMETER_LIMIT)])
        db.session.commit()
        family = live.family_id
        _analyze("refresh_tokens")
    response = client.post("/connect/revocation", data={"token": tokens["refresh_token"],
                                                        "token_type_hint": "refresh_token"},
                           headers={"Authorization": LEGACY_BASIC})
    assert response.status_code == 200, f"{response.status_code} {response.get_data(as_text=True)[:200]}"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RefreshToken)
                                 .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))) == 0
        assert db.session.scalar(select(func.count()).select_from(RevokedAccessToken)) == PAST_THE_PARAMETER_LIMIT + 1


#: an installation's API scopes (docs: a large one has 500), each named as APIs name theirs
API_SCOPES = [f"orders.api.read.{i:03}" for i in range(500)]
GATEWAY_SECRET = "gateway-secret-0123456789"


@pytest.mark.database_independent
def test_a_client_allowed_every_api_scope_is_not_given_a_token_the_server_refuses(app, client, seeded):
    # a gateway allowed every API scope asks client_credentials without `scope`: it is given every
    # one (docs/endpoints.md), and its token must be one this server then takes
    from identity.services.seed import apply_seed, load_seed

    with app.app_context():
        apply_seed(load_seed(json.dumps({
            "api_scopes": [{"name": name} for name in API_SCOPES],
            "clients": [{"client_id": "gateway", "client_name": "Gateway", "client_secrets": [GATEWAY_SECRET],
                         "allowed_grant_types": ["client_credentials"], "allowed_scopes": API_SCOPES}]})))
    response = client.post("/connect/token", data={"grant_type": "client_credentials"},
                           headers=basic("gateway", GATEWAY_SECRET))
    if response.status_code == 200:  # a token: it must work here
        token = response.get_json()["access_token"]
        answer = client.post("/connect/introspect", data={"token": token}, headers=basic("gateway", GATEWAY_SECRET))
        assert answer.get_json().get("active") is True, \
            f"a token of {len(token)} bytes issued, then introspected as {answer.get_json()}"
    else:  # or a clear refusal, naming the limit
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json()["error"] == "invalid_scope", response.get_json()
        assert "JWT_MAX_LENGTH" in response.get_json()["error_description"], response.get_json()
