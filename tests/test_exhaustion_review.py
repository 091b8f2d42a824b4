"""What one caller's requests may cost the server: Argon2 verifications, rows, mail. Each test
measures in counts (hashes run, rows written) and asserts a bound, never a time."""

import base64
import json
import logging
import time
from contextlib import contextmanager

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.pool import NullPool

from actions import OAuthActions
from conftest import BOB_PASSWORD, CHEAP_ARGON2, FLOW_SECRETS, close_connections
from identity.extensions import db
from identity.models import AuthorizationCode, RefreshToken

LIMITED = {**CHEAP_ARGON2, "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
           "RATELIMIT_SENSITIVE": "3 per minute", "RATELIMIT_DEFAULT": "1000 per minute"}


@pytest.fixture
def argon2_verifications(monkeypatch):
    """How many Argon2 verifications ran (the real ones: each call is passed on)."""
    calls = []
    real = PasswordHasher.verify

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    return calls


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


# --- client authentication: every failure costs an Argon2 verification --------------------------


@pytest.mark.parametrize("app_config", [LIMITED])
def test_failed_client_authentications_are_held_to_the_sign_in_limit(client, seeded, argon2_verifications):
    """A wrong or unknown client's secret costs one Argon2 verification (security.md), as a wrong
    password does; without the sign-in limit one address could have 1,000 a minute verified at
    each of the token, revocation and introspection endpoints (3,000 a minute, 30 times the sign-in
    form's 100). Failures at the three count together toward RATELIMIT_SENSITIVE."""
    attempts = [
        ("/connect/token", {"grant_type": "client_credentials", "scope": "IdentityServerApi"}, "nobody"),
        ("/connect/revocation", {"token": "x"}, "service"),
        ("/connect/introspect", {"token": "x"}, "service"),
    ]
    statuses = []
    for _ in range(4):
        for path, data, client_id in attempts:
            statuses.append(client.post(path, data=data, headers=basic(client_id, "wrong-secret")).status_code)
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}, statuses
    assert len(argon2_verifications) <= 3


@pytest.mark.parametrize("app_config", [LIMITED])
def test_clients_that_authenticate_are_not_held_to_the_sign_in_limit(client, seeded):
    """Only failures count: a client that authenticates uses the token endpoint as often as the
    general limit allows, also after an address's failures (below the limit)."""
    oauth = OAuthActions(client)
    assert client.post("/connect/token", data={"grant_type": "client_credentials"},
                       headers=basic("service", "wrong-secret")).status_code == 401
    statuses = [oauth.token("service", grant_type="client_credentials", scope="IdentityServerApi").status_code
                for _ in range(6)]
    assert statuses == [200] * 6


# --- a grant's rotated refresh tokens: kept, but never read again per request ----------------------


@contextmanager
def sqlite_steps(app):
    """Count the SQLite virtual machine's steps of the statements run in the block (in hundreds):
    a measure of the rows a query visits, the same on every run (no clock)."""
    count = [0]

    def tick():
        count[0] += 1
        return 0

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        conn.connection.driver_connection.set_progress_handler(tick, 100)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


def _rotate(client, refresh_token: str) -> dict:
    response = OAuthActions(client).token("legacy", grant_type="refresh_token", refresh_token=refresh_token)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_listing_a_users_grants_does_not_read_their_rotated_refresh_tokens(app, client, flow_clients, database_uri):
    """Every refresh keeps the token it replaces until that one expires (30 days), so its reuse can
    revoke the family: an app, or a person holding a public client's refresh token, adds a row a
    request (1,000 a minute from one address; 1.4 million a day). GET /localapi/sessions (and the
    sessions and grants pages) read the user's refresh tokens through (user_id, client_id) and
    family_id alone, so each listing visited every rotated row: 19 ms at none, 277 ms at
    200,000 on SQLite, and growing for a month, at the general rate limit. Listing reads the live
    tokens (one a grant) through an index of them, and each family's start through (family_id,
    issued_at): its cost does not grow with the rotations."""
    if not database_uri.startswith("sqlite"):
        pytest.skip("counts SQLite's virtual machine steps")
    grant = client.post("/connect/token", data={"grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
                                                "scope": "openid IdentityServerApi offline_access"},
                        headers=basic("legacy", FLOW_SECRETS["legacy"])).get_json()
    steps = []
    for rotations in (20, 200):
        while True:
            with app.app_context():
                kept = db.session.scalar(select(func.count()).select_from(RefreshToken))
            if kept > rotations:
                break
            grant = _rotate(client, grant["refresh_token"])
        with sqlite_steps(app) as count:
            listing = client.get("/localapi/sessions", headers={"Authorization": "Bearer " + grant["access_token"]})
        assert listing.status_code == 200
        assert [e["current"] for e in listing.get_json()] == [True]
        steps.append(count[0])
    assert steps[1] <= steps[0] + 5, steps  # 180 more rotated tokens: at most 500 more steps


def _table_updates(database_uri: str, table: str) -> tuple[int, int]:
    """(updates, heap-only updates) of a table, as PostgreSQL's statistics have them now (a new
    connection, so no snapshot of them is reused)."""
    engine = create_engine(database_uri, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return tuple(connection.execute(text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = :table"),
                {"table": table}).one())
    finally:
        engine.dispose()


def test_a_refresh_tokens_rotation_is_a_heap_only_update_on_postgresql(app, client, flow_clients, database_uri):
    """A rotation marks the old token consumed. With an index that names consumed_at (the partial
    index of live tokens the listing above once used), PostgreSQL cannot make that UPDATE
    heap-only: it writes the new row version into each of the table's seven indexes, and the
    refresh grant lost a fifth of its rate (bench/PERFORMANCE.md). No index names a column a
    rotation or a revocation sets, and the updates are heap-only."""
    if database_uri.startswith("sqlite"):
        pytest.skip("PostgreSQL's heap-only updates")
    with app.app_context():
        definitions = db.session.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'refresh_tokens'")).all()
    assert len(definitions) >= 5, definitions
    assert [d for d in definitions if "consumed_at" in d or "revoked_at" in d] == []
    before = _table_updates(database_uri, "refresh_tokens")
    grant = client.post("/connect/token", data={"grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
                                                "scope": "openid IdentityServerApi offline_access"},
                        headers=basic("legacy", FLOW_SECRETS["legacy"])).get_json()
    for _ in range(10):
        grant = _rotate(client, grant["refresh_token"])
    close_connections(app)  # a backend reports its counts at the latest when it ends
    deadline = time.monotonic() + 30
    while (after := _table_updates(database_uri, "refresh_tokens"))[0] < before[0] + 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after[0] - before[0] >= 10, (before, after)  # the ten rotations' updates were reported
    # heap-only (all ten, here, as a rule; one may not fit its page): none ever was, with the index
    assert after[1] - before[1] >= 3, (before, after)


# --- the request log: a line does not grow with the request ---------------------------------------


@pytest.mark.parametrize("path, method", [
    ("/" + "a" * 60_000, "GET"),
    ("/" + "%FF" * 20_000, "GET"),  # each byte that is not UTF-8 logs as "\ufffd": six characters
    ("/account/login", "X" * 60_000),
])
def test_a_request_log_line_is_bounded_whatever_the_path_or_method(client, caplog, path, method):
    """Unknown paths are not rate-limited, and granian takes a request line up to 64 KiB (gunicorn
    8 KiB, limit_request_line): a line carried the whole path, JSON-escaped, so one request of 60 KB
    wrote 120 KB to the log (and a single line that size, which log shippers split or drop)."""
    caplog.set_level(logging.INFO, logger="identity.requests")
    response = client.open(path, method=method)
    assert response.status_code in (404, 405)
    lines = [r.getMessage() for r in caplog.records if r.name == "identity.requests"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert len(lines[0]) <= 2048, len(lines[0])
    assert entry["status"] == response.status_code


# --- a user's listing of sessions and grants is bounded ---------------------------------------------


def test_a_listing_of_sessions_and_grants_is_bounded_and_every_entry_can_still_be_ended(app, client, flow_clients):
    """Every code redeemed with offline_access, and every password grant with it, starts a grant
    that lives 30 days (1,000 a minute from one address: authorize and token are held to the
    general limit alone). GET /localapi/sessions and the sessions page built and sent every one
    of them on each request (and ending one listed them all to find it): a response, and a
    worker's memory, that grew without bound with what one user had made. A listing shows the
    MAX_LISTED most recent of each kind (and the caller's own); ending one by its id, or all,
    still reaches every grant."""
    from identity.services.devices import MAX_LISTED

    def password_grant():
        response = client.post("/connect/token", data={
            "grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
            "scope": "openid IdentityServerApi offline_access"}, headers=basic("legacy", FLOW_SECRETS["legacy"]))
        assert response.status_code == 200
        return response.get_json()

    first = password_grant()
    for _ in range(MAX_LISTED + 2):
        password_grant()
    with app.app_context():
        oldest = "app_" + db.session.scalar(select(RefreshToken.family_id).order_by(RefreshToken.id).limit(1))
        grants = db.session.scalar(select(func.count(func.distinct(RefreshToken.family_id))))
    assert grants == MAX_LISTED + 3
    caller = {"Authorization": "Bearer " + first["access_token"]}
    listing = client.get("/localapi/sessions", headers=caller).get_json()
    assert len(listing) <= MAX_LISTED + 1, len(listing)
    assert listing[0]["current"] is True and listing[0]["id"] == oldest  # the caller's own, however old
    # an entry the listing leaves out is ended by its id all the same
    with app.app_context():
        second = "app_" + db.session.scalars(select(RefreshToken.family_id).order_by(RefreshToken.id)).all()[1]
    assert second not in {e["id"] for e in listing}
    assert client.delete(f"/localapi/sessions/{second}", headers=caller).status_code == 204
    assert client.delete(f"/localapi/sessions/{second}", headers=caller).status_code == 404
    assert client.delete("/localapi/sessions", headers=caller).status_code == 204
    with app.app_context():
        live = db.session.scalar(select(func.count()).select_from(RefreshToken).where(
            RefreshToken.revoked_at.is_(None), RefreshToken.consumed_at.is_(None)))
    assert live == 1  # the caller's own
    assert [e["id"] for e in client.get("/localapi/sessions", headers=caller).get_json()] == [oldest]


# --- the grants page: one line an app, whatever the user's number of grants --------------------------


def test_the_grants_page_does_not_load_each_of_a_users_grants(app, client, flow_clients):
    """/account/grants lists one line an app, but read every live refresh token of the user twice,
    the second time as whole ORM objects: a user who started a million grants (each code redeemed
    with offline_access, at the general limit) made each view of the page load a million objects.
    The page now asks the database for each app's first grant and scopes: the memory a view takes
    does not grow with the grants."""
    import tracemalloc

    from actions import AuthActions

    def password_grant():
        response = client.post("/connect/token", data={
            "grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
            "scope": "openid IdentityServerApi offline_access"}, headers=basic("legacy", FLOW_SECRETS["legacy"]))
        assert response.status_code == 200

    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 302
    peaks = []
    for grants in (20, 420):
        while True:
            with app.app_context():
                made = db.session.scalar(select(func.count()).select_from(RefreshToken))
            if made >= grants:
                break
            password_grant()
        client.get("/account/grants")  # warm: templates, statements
        tracemalloc.start()
        page = client.get("/account/grants")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert page.status_code == 200 and "Legacy App" in page.get_data(as_text=True)
    assert peaks[1] - peaks[0] < 100_000, peaks  # 400 more grants: not 400 more rows in memory


def test_finding_the_callers_grant_does_not_read_the_users_codes(app, client, flow_clients, database_uri):
    """GET /localapi/sessions marks the caller's own grant, found from its access token's jti: on
    the refresh tokens, then on the codes (issued_jti, front_channel_jti), which had no index, so
    a token of no grant (a password grant or a code flow without offline_access) visited every code
    of the user kept for the day after its expiry (one an authorization request, 1,000 a minute)."""
    if not database_uri.startswith("sqlite"):
        pytest.skip("counts SQLite's virtual machine steps")
    from actions import AuthActions

    response = client.post("/connect/token", data={
        "grant_type": "password", "username": "bob", "password": BOB_PASSWORD, "scope": "openid IdentityServerApi"},
        headers=basic("legacy", FLOW_SECRETS["legacy"]))
    caller = {"Authorization": "Bearer " + response.get_json()["access_token"]}
    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 302
    oauth = OAuthActions(client)
    steps = []
    for codes in (20, 200):
        while True:
            with app.app_context():
                made = db.session.scalar(select(func.count()).select_from(AuthorizationCode))
            if made >= codes:
                break
            authorized = oauth.authorize(client_id="web", scope="openid")
            if "/consent" in authorized.headers["Location"]:
                authorized = oauth.consent(authorized.headers["Location"], remember=True)
            assert "code=" in authorized.headers["Location"]
        with sqlite_steps(app) as count:
            listing = client.get("/localapi/sessions", headers=caller)
        assert listing.status_code == 200
        steps.append(count[0])
    assert steps[1] <= steps[0] + 5, steps  # 180 more codes: at most 500 more steps


# --- the link pages: a row of the audit log per request, for a year ------------------------------


@pytest.mark.parametrize("app_config", [LIMITED])
@pytest.mark.parametrize("path", ["/account/reset-password?token=not-a-link", "/account/verify-email?token=not-a-link"])
def test_opening_links_that_are_not_links_is_held_to_the_sign_in_limit(app, client, seeded, path):
    """Opening a reset or verification link that does not work records an audit event (kept
    AUDIT_RETENTION_DAYS, a year) and commits it: anyone, signed in or not, with no form or
    CSRF token, wrote one row a request at the general limit (1,000 a minute, 1.4 million rows a
    day from one address). A link is a secret, like a password: its pages are held to the sign-in
    limit, as the reset form's post is."""
    from identity.models import AuditEvent

    def events():
        with app.app_context():
            return db.session.scalar(select(func.count()).select_from(AuditEvent))

    before = events()
    statuses = [client.get(path).status_code for _ in range(6)]
    assert statuses[:3] == [400, 400, 400]
    assert set(statuses[3:]) == {429}, statuses
    assert events() - before <= 3


@pytest.mark.parametrize("app_config", [LIMITED])
def test_opening_a_working_link_again_and_again_is_not_held_to_the_sign_in_limit(app, client, seeded, mail):
    """Only the links that do not work count toward the sign-in limit: people behind one carrier
    NAT address open their reset links at the general limit (at least 1,000 a minute, the
    contract's word for every endpoint but sign-in and password change)."""
    from test_recovery import local, reset_link

    path = local(reset_link(app, client, mail))
    statuses = [client.get(path).status_code for _ in range(6)]

    assert statuses == [200] * 6


# --- revoking a grant: the deny list gets the access tokens that may still live ---------------------


def test_revoking_a_grant_lists_only_access_tokens_that_may_still_live(app, client, flow_clients):
    """Revoking a family put the jti of every access token ever issued in it on the deny list,
    one row each, kept a day (ACCESS_TOKEN_LIFETIME_MAX): a grant refreshed 1,000 times a minute
    for its 30 days made one revocation (a person ending the app, a reused refresh token) insert
    43 million rows in one transaction, past the statement timeout, so it could never commit. No
    access token outlives ACCESS_TOKEN_LIFETIME_MAX, so the older rotations' tokens are left out."""
    from sqlalchemy import update

    from identity.constants import ACCESS_TOKEN_LIFETIME_MAX
    from identity.models import RevokedAccessToken

    grant = client.post("/connect/token", data={"grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
                                                "scope": "openid IdentityServerApi offline_access"},
                        headers=basic("legacy", FLOW_SECRETS["legacy"])).get_json()
    for _ in range(40):
        grant = _rotate(client, grant["refresh_token"])
    with app.app_context():  # those 41 were issued two days ago: their access tokens have expired
        two_days_ago = RefreshToken.issued_at - 2 * ACCESS_TOKEN_LIFETIME_MAX
        db.session.execute(update(RefreshToken).values(issued_at=two_days_ago))
        db.session.commit()
    for _ in range(3):
        grant = _rotate(client, grant["refresh_token"])
    revoked = client.post("/connect/revocation", data={"token": grant["refresh_token"]},
                          headers=basic("legacy", FLOW_SECRETS["legacy"]))
    assert revoked.status_code == 200
    with app.app_context():
        listed = db.session.scalar(select(func.count()).select_from(RevokedAccessToken))
    assert listed <= 3, listed  # the three rotations of today
    refused = client.get("/connect/userinfo", headers={"Authorization": "Bearer " + grant["access_token"]})
    assert refused.status_code == 401


# --- the rate limiter's key: a client's network, not each of its IPv6 addresses ---------------------


@pytest.mark.parametrize("app_config", [LIMITED])
def test_the_per_address_limits_count_an_ipv6_client_by_its_64_network(client, flow_clients):
    """Every IPv6 customer gets a /64 (2^64 addresses) and may send from any of them: counted
    per address, a per-IP limit (RATELIMIT_SENSITIVE on sign-in and the password grant, each an
    Argon2 verification) allowed one client as many attempts as it chose addresses. Limits count
    an IPv6 client by its /64, as an IPv4 client by its address."""
    def attempt(address):
        return client.post("/connect/token", data={"grant_type": "password", "username": "bob", "password": "not-bobs",
                                                   "scope": "openid"},
                           headers=basic("legacy", FLOW_SECRETS["legacy"]), environ_base={"REMOTE_ADDR": address}).status_code

    statuses = [attempt(f"2001:db8:1:2::{i:x}") for i in range(1, 6)]
    assert statuses[:3] == [400, 400, 400]
    assert set(statuses[3:]) == {429}, statuses
    assert attempt("2001:db8:1:3::1") == 400  # another /64: another customer
    assert [attempt(f"198.51.100.{i}") for i in (1, 2, 3, 4)] == [400, 400, 400, 400]  # IPv4: each address
