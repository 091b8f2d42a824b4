"""The upgrade path: databases an older release wrote, upgraded to head, and the grants they hold
listed and ended as before (store/refresh_families.py reads a user's families through
(user_id, family_id) and each family's newest token through (family_id, issued_at))."""

import base64

from sqlalchemy import func, select, update

from actions import OAuthActions
from conftest import BOB_PASSWORD, FLOW_CLIENTS, FLOW_SECRETS
from identity.extensions import db
from identity.models import RefreshToken
from identity.services.schema import head_revision


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def password_grant(client) -> dict:
    response = client.post("/connect/token", data={
        "grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
        "scope": "openid IdentityServerApi offline_access"}, headers=basic("legacy", FLOW_SECRETS["legacy"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client, refresh_token: str):
    return OAuthActions(client).token("legacy", grant_type="refresh_token", refresh_token=refresh_token)


def rotate(client, grant: dict) -> dict:
    response = refresh(client, grant["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def family_of(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(select(RefreshToken.family_id).group_by(RefreshToken.family_id)
                                  .order_by(func.min(RefreshToken.id))).all()


def listed_apps(client, grant: dict) -> list[str]:
    response = client.get("/localapi/sessions", headers={"Authorization": "Bearer " + grant["access_token"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry["id"] for entry in response.get_json() if entry["id"].startswith("app_")]


def test_a_grant_rotated_by_an_instance_whose_clock_is_behind_is_listed_and_ended(app, client, flow_clients):
    """Two instances on one database (or one whose clock NTP steps back): a refresh token issued
    by the one whose clock is ahead is rotated by the other, so its successor, the family's only
    live token, has the smaller issued_at. The listings take a family's newest token by issued_at
    (refresh_families): that one was consumed, so the live grant was listed nowhere, and ending
    every other session (DELETE /localapi/sessions, the sessions page's "sign out everywhere")
    left it working. A successor is never issued before the token it replaces."""
    skewed = password_grant(client)
    caller = password_grant(client)
    skewed_family, caller_family = family_of(app)
    with app.app_context():  # written by an instance whose clock is 5 seconds ahead of this one's
        db.session.execute(update(RefreshToken).where(RefreshToken.family_id == skewed_family)
                           .values(issued_at=RefreshToken.issued_at + 5))
        db.session.commit()
    skewed = rotate(client, skewed)

    assert set(listed_apps(client, caller)) == {"app_" + skewed_family, "app_" + caller_family}
    assert listed_apps(client, skewed)[0] == "app_" + skewed_family  # the caller's own, first
    assert client.delete("/localapi/sessions", headers={"Authorization": "Bearer " + caller["access_token"]}
                         ).status_code == 204
    assert refresh(client, skewed["refresh_token"]).status_code == 400  # ended with the others
    assert listed_apps(client, caller) == ["app_" + caller_family]


# --- a database an older release wrote, upgraded to head ------------------------------------------

import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from flask_migrate import downgrade as migrate_down, upgrade as migrate_up  # noqa: E402

from app import create_app  # noqa: E402
from conftest import HttpsClient, close_connections, make_config  # noqa: E402
from test_migration_sessions import _migrate, _rows, _run, scratch_uri  # noqa: E402,F401

OLDEST = "06e791e9e23d"


def _old_release_data(app, stamp: int) -> dict:
    """What the first release wrote, in its own SQL: bob, a browser session, a consent and three
    refresh-token families of the password grant: one rotated twice (two consumed tokens, the
    third live), one whose live token has its predecessor's issued_at, one revoked."""
    from identity.services.passwords import hash_password

    with app.app_context():
        password_hash = hash_password(BOB_PASSWORD)
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, email, email_normalized, name, "
              "password_hash, password_version, password_changed_at, failed_attempts, locked_until, created_at) "
              "VALUES (7, 'sub-bob', 'bob', 'bob', 'bob@example.com', 'bob@example.com', 'Bob', :hash, 1, :old, 0, 0, :old)",
         hash=password_hash, old=stamp - 5000)
    _run(app, "INSERT INTO user_sessions (id, sid, user_id, auth_time, created_at) VALUES (1, 'cookie-sid', 7, :t, :t)",
         t=stamp - 900)
    _run(app, "INSERT INTO consents (user_id, client_id, scopes, created_at) VALUES (7, 'legacy', :scopes, :t)",
         scopes=json.dumps(["openid", "IdentityServerApi", "offline_access"]), t=stamp - 900)
    tokens = {}
    rows = [  # name, family, issued_at, consumed_at, revoked_at
        ("f1-a", "fam-one", stamp - 900, stamp - 600, None),
        ("f1-b", "fam-one", stamp - 600, stamp - 300, None),
        ("f1-c", "fam-one", stamp - 300, None, None),
        ("f2-a", "fam-two", stamp - 200, stamp - 200, None),
        ("f2-b", "fam-two", stamp - 200, None, None),
        ("f3-a", "fam-three", stamp - 100, None, stamp - 50),
    ]
    for name, family, issued, consumed, revoked in rows:
        tokens[name] = f"old-release-refresh-token-{name}"
        _run(app, "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, session_id, scope, auth_time, "
                  "access_token_jti, issued_at, expires_at, consumed_at, revoked_at) VALUES (:hash, :family, 'legacy', 7, "
                  "'cookie-sid', 'openid IdentityServerApi offline_access', :auth, :jti, :issued, :expires, :consumed, :revoked)",
             hash=hashlib.sha256(tokens[name].encode()).hexdigest(), family=family, auth=stamp - 900, jti="jti-" + name,
             issued=issued, expires=issued + 30 * 86400, consumed=consumed, revoked=revoked)
    return tokens


def test_an_old_releases_grants_refresh_list_and_revoke_after_the_upgrade(scratch_uri):  # noqa: F811
    """From the first release's schema with its data to head: bob signs in with his password,
    the live refresh tokens refresh, the sessions listing shows each live family once (not the
    revoked one, nor a rotated token), and a rotated token used again revokes its family."""
    from identity.services.seed import apply_seed, load_seed

    app = create_app(make_config(scratch_uri))
    stamp = int(time.time())
    _migrate(app, migrate_up, OLDEST)
    tokens = _old_release_data(app, stamp)
    _migrate(app, migrate_up, "head")
    with app.app_context():
        apply_seed(load_seed(json.dumps({"api_scopes": [], "clients": FLOW_CLIENTS["clients"]})))
    app.test_client_class = HttpsClient
    client = app.test_client()
    try:
        assert password_grant(client)["access_token"]  # the old password hash still signs in
        one = refresh(client, tokens["f1-c"])
        assert one.status_code == 200, one.get_data(as_text=True)
        one = one.get_json()
        two = refresh(client, tokens["f2-b"])
        assert two.status_code == 200, two.get_data(as_text=True)
        assert refresh(client, tokens["f3-a"]).status_code == 400  # revoked by the old release
        listed = listed_apps(client, one)
        assert listed[0] == "app_fam-one" and "app_fam-two" in listed  # the caller's own first
        assert "app_fam-three" not in listed and len(listed) == len(set(listed)) == 3  # and the password grant's
        assert refresh(client, tokens["f1-a"]).status_code == 400  # rotated by the old release: reuse
        assert refresh(client, one["refresh_token"]).status_code == 400  # its family revoked with it
        assert "app_fam-one" not in listed_apps(client, two.get_json())
        assert _rows(app, "SELECT count(*) FROM refresh_tokens WHERE family_id = 'fam-one' AND revoked_at IS NULL") == [(0,)]
    finally:
        close_connections(app)


BEFORE_VERIFY_EMAIL = "e5a1c7d3b9f2"  # the revision before d7e1a9c3b5f2, which rebuilds `users` on SQLite


def _counts(app) -> dict:
    tables = ("user_sessions", "refresh_tokens", "consents", "totp_factors", "recovery_codes", "passkeys",
              "account_tokens")
    return {table: _rows(app, f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def test_migrations_that_rebuild_users_keep_what_names_a_user_up_and_down(scratch_uri):  # noqa: F811
    """On SQLite a batch migration that adds a column with a default (users.enabled, users.email_verified)
    copies `users`, drops it and renames the copy; with foreign keys on, the DROP deleted by ON DELETE
    CASCADE every session, refresh token, consent, authenticator app, recovery code, passkey and mail
    link of every user: an upgrade signed everyone out and took their second factors away, and so
    did the downgrade. Every row is kept both ways, MFA still asks, and the app's connections have
    their foreign keys on again afterwards."""
    from actions import AuthActions
    from identity.services.passwords import hash_password

    app = create_app(make_config(scratch_uri))
    stamp = int(time.time())
    _migrate(app, migrate_up, BEFORE_VERIFY_EMAIL)
    with app.app_context():
        password_hash = hash_password(BOB_PASSWORD)
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, email, email_normalized, password_hash, "
              "password_version, password_changed_at, failed_attempts, locked_until, created_at) "
              "VALUES (7, 'sub-bob', 'bob', 'bob', 'bob@example.com', 'bob@example.com', :hash, 1, :t, 0, 0, :t)",
         hash=password_hash, t=stamp - 5000)
    _run(app, "INSERT INTO user_sessions (sid, public_sid, user_id, auth_time, created_at, last_seen_at) "
              "VALUES ('cookie-sid', 'public-sid', 7, :t, :t, :t)", t=stamp - 60)
    _run(app, "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, issued_at, expires_at) "
              "VALUES ('h', 'fam', 'legacy', 7, 'openid offline_access', :t, :e)", t=stamp - 60, e=stamp + 86400)
    _run(app, "INSERT INTO consents (user_id, client_id, scopes, created_at) VALUES (7, 'legacy', '[\"openid\"]', :t)",
         t=stamp)
    _run(app, "INSERT INTO totp_factors (user_id, secret_encrypted, created_at, confirmed_at, last_step) "
              "VALUES (7, 'sealed', :t, :t, 0)", t=stamp)
    _run(app, "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (7, :h, :t)",
         h=hashlib.sha256(b"ABCDEFGHJK").hexdigest(), t=stamp)
    _run(app, "INSERT INTO passkeys (user_id, credential_id, public_key, sign_count, transports, backup_eligible, "
              "aaguid, name, created_at) VALUES (7, 'cred', :key, 0, '', :no, '', 'Phone', :t)",
         key=b"\x01", no=False, t=stamp)
    _run(app, "INSERT INTO account_tokens (token_hash, purpose, user_id, created_at, expires_at) "
              "VALUES ('link', 'reset', 7, :t, :e)", t=stamp, e=stamp + 3600)
    before = _counts(app)
    assert set(before.values()) == {1}

    _migrate(app, migrate_up, "head")
    assert _counts(app) == before
    app.test_client_class = HttpsClient
    client = app.test_client()
    try:
        signed = AuthActions(client).login("bob", BOB_PASSWORD)
        assert "/account/login/mfa" in signed.headers.get("Location", ""), signed.status_code  # MFA still asks
        _migrate(app, migrate_down, BEFORE_VERIFY_EMAIL)
        assert _counts(app) == before
        _migrate(app, migrate_up, "head")
        assert _counts(app) == before
        _run(app, "DELETE FROM users WHERE id = 7")  # the app's connections cascade again
        assert set(_counts(app).values()) == {0}
    finally:
        close_connections(app)


# --- e5b9d3f7a1c6: the listings through (user_id, family_id), against every token read -----------


def test_the_listings_of_grants_are_the_families_with_a_live_token(app, flow_clients):
    """Many families of two users, each rotated 0 to 5 times, whose newest token is live, revoked,
    expired, consumed without a successor, or shares its issued_at with its predecessor: the
    sessions listing, the grants page's apps and logout's families are the families that have an
    unused, unrevoked, unexpired token (read here from every token), and the other user's are never
    among them."""
    from identity.models import User
    from identity.services import consent, devices
    from identity.store import logout as logout_store

    stamp = int(time.time())
    with app.app_context():
        bob, alice = (db.session.scalar(select(User.id).where(User.username == name)) for name in ("bob", "alice"))
        kinds = ("live", "revoked", "expired", "consumed", "same_second")
        rows = []
        for number in range(60):
            user = bob if number % 4 else alice
            kind, rotations = kinds[number % len(kinds)], number % 6
            family = f"fam-{number:03d}"
            issued = stamp - 1000 + number
            for step in range(rotations + 1):
                newest = step == rotations
                rows.append(RefreshToken(
                    token_hash=f"{family}-{step}", family_id=family, client_id="legacy", user_id=user,
                    scope="openid offline_access", auth_time=stamp - 2000, issued_at=issued,
                    expires_at=stamp - 1 if newest and kind == "expired" else stamp + 3600,
                    consumed_at=None if newest and kind != "consumed" else issued,
                    revoked_at=stamp - 5 if kind == "revoked" else None))
                if not (kind == "same_second" and step == rotations - 1):
                    issued += 7
        db.session.add_all(rows)
        db.session.commit()
        every = db.session.execute(select(RefreshToken.family_id).where(
            RefreshToken.user_id == bob, RefreshToken.consumed_at.is_(None), RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at >= stamp)).scalars().all()
        assert len(every) == len(set(every)) > 5
        expected = {"app_" + family for family in every}
        listed = [e.id for e in devices.list_entries(bob, limit=None) if e.kind == devices.APP]
        assert sorted(listed) == sorted(expected)
        assert {e.id for e in devices.list_entries(bob, limit=3)} <= expected
        assert [g.client_id for g in consent.list_grants(bob)] == ["legacy"]
        assert {client_id for client_id, _ in logout_store.user_live_families(bob, stamp)} == {"legacy"}
        for family in every:
            assert [e.id for e in devices.list_entries(bob, only="app_" + family)] == ["app_" + family]
        assert devices.list_entries(bob, only="app_fam-000") == []  # alice's


def test_a_grant_rotated_by_an_instance_whose_clock_was_behind_is_listed_after_the_upgrade(scratch_uri):  # noqa: F811
    """Before e5b9d3f7a1c6 a rotation stamped the successor with its instance's clock; one whose
    clock was a second behind the instance that issued the old token stored the live token as the
    older of the two. The listings since take a family's newest token by issued_at as its live
    one: upgraded, such a grant was listed nowhere (sessions page, /localapi/sessions, logout's
    families) and "sign out everywhere" left it working. The migration gives such live tokens
    their family's newest issued_at."""
    from identity.services import devices
    from identity.store import logout as logout_store

    app = create_app(make_config(scratch_uri))
    _migrate(app, migrate_up, "c3e7a1d5f9b4")
    stamp = int(time.time())
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
              "password_changed_at, failed_attempts, locked_until, created_at) VALUES (7, 's', 'bob', 'bob', 'x', 1, 0, 0, 0, 0)")
    for token_hash, issued_at, consumed_at in (("old", stamp - 60, stamp - 61), ("new", stamp - 61, None)):
        _run(app, "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, issued_at, expires_at, "
                  "consumed_at) VALUES (:hash, 'fam', 'legacy', 7, 'openid offline_access', :issued, :expires, :consumed)",
             hash=token_hash, issued=issued_at, expires=stamp + 3600, consumed=consumed_at)

    _migrate(app, migrate_up, "head")

    with app.app_context():
        assert [e.id for e in devices.list_entries(7, limit=None)] == ["app_fam"]
        assert logout_store.user_live_families(7, stamp) == [("legacy", None)]
    assert _rows(app, "SELECT token_hash, issued_at FROM refresh_tokens ORDER BY id") == [
        ("old", stamp - 60), ("new", stamp - 60)]
    close_connections(app)


# --- PostgreSQL: what a running server meets while `db upgrade` builds an index ----------------


def _read_while_a_writer_holds_the_upgrade(scratch_uri: str, start: str, read: str, expected: int):
    """Upgrade from `start` to the head while a writer's open transaction (a rotation in flight)
    holds up the index builds of refresh_tokens; meanwhile `read` must answer `expected` within a
    second (lock_timeout). The app, once the upgrade has finished without error."""
    import threading

    from sqlalchemy import create_engine, text

    if scratch_uri.startswith("sqlite"):
        pytest.skip("PostgreSQL's locks")
    app = create_app(make_config(scratch_uri))
    _migrate(app, migrate_up, start)
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
              "password_changed_at, failed_attempts, locked_until, created_at) VALUES (7, 's', 'bob', 'bob', 'x', 1, 0, 0, 0, 0)")
    _run(app, "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, issued_at, expires_at) "
              "VALUES ('h', 'fam', 'legacy', 7, 'openid', 1, 2)")
    engine = create_engine(scratch_uri)
    writer, reader = engine.connect(), engine.connect()
    failures = []

    def upgrade_to_head():
        try:
            _migrate(app, migrate_up, "head")
        except Exception as err:  # noqa: BLE001 (reported below)
            failures.append(err)

    upgrading = threading.Thread(target=upgrade_to_head)
    try:
        writer.execute(text("UPDATE refresh_tokens SET consumed_at = 1"))  # a rotation in flight: ROW EXCLUSIVE
        upgrading.start()
        time.sleep(1.5)  # the upgrade now waits for the writer
        assert upgrading.is_alive()
        reader.execute(text("SET lock_timeout = '1s'"))
        assert reader.execute(text(read)).scalar() == expected
        reader.rollback()
    finally:
        writer.rollback()
        if upgrading.ident is not None:  # started
            upgrading.join(30)
        writer.close()
        reader.close()
        engine.dispose()
        close_connections(app)
    assert not failures, failures
    return app


def test_reads_of_refresh_tokens_go_on_while_the_upgrade_builds_its_index(scratch_uri):  # noqa: F811
    """e5b9d3f7a1c6 dropped the partial index first, then built (user_id, family_id): the DROP's
    ACCESS EXCLUSIVE lock is held until the upgrade commits, so every read of refresh_tokens by the
    servers still running (the refresh grant's lookup, introspection, the sessions pages) waited for
    the whole build: 5.7 s at 2,000,000 tokens from b9d4f6a8c2e1 (three builds and this one), past
    the servers' statement timeout at some ten million. Built first, then the old one dropped,
    the build blocks writes only (SHARE) and reads go on. Here the build is held up by a writer's
    open transaction, and a read must still answer within a second."""
    app = _read_while_a_writer_holds_the_upgrade(
        scratch_uri, "c3e7a1d5f9b4", "SELECT count(*) FROM refresh_tokens WHERE token_hash = 'h'", 1)
    assert _rows(app, "SELECT count(*) FROM refresh_tokens") == [(1,)]


def test_what_a_downgrade_drops_is_what_the_deployment_guide_says(scratch_uri):  # noqa: F811
    """docs/deployment.md lists what `db downgrade` takes away. It named apps, codes, passkeys,
    disabled flags, require_verified_email and revoked keys, but not the clients' logout URIs,
    the back-channel logout tokens still queued (never delivered: the apps' sessions stay open),
    the addresses' verified flags and the links mailed for a reset or a verification: after a
    rollback and the upgrade again, each is gone, and the guide names each."""
    import pathlib
    import re

    app = create_app(make_config(scratch_uri))
    stamp = int(time.time())
    _migrate(app, migrate_up, "head")
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, email, email_normalized, email_verified, "
              "password_hash, password_version, password_changed_at, failed_attempts, locked_until, created_at) "
              "VALUES (7, 's', 'bob', 'bob', 'b@example.com', 'b@example.com', :yes, 'x', 1, 0, 0, 0, 0)", yes=True)
    _run(app, "INSERT INTO clients (client_id, client_name, secret_hashes, allowed_grant_types, redirect_uris, "
              "post_logout_redirect_uris, allowed_cors_origins, allowed_scopes, require_consent, require_pkce, "
              "allow_offline_access, allow_access_tokens_via_browser, access_token_lifetime, enabled, created_at, "
              "backchannel_logout_uri, frontchannel_logout_uri) VALUES ('rp', 'RP', '[]', '[]', '[]', '[]', '[]', '[]', "
              ":no, :yes, :no, :no, 300, :yes, 0, 'https://rp.example/bc', 'https://rp.example/fc')", yes=True, no=False)
    _run(app, "INSERT INTO logout_deliveries (jti, client_id, uri, reason, created_at, attempts, next_attempt_at) "
              "VALUES ('j', 'rp', 'https://rp.example/bc', 'logout', :t, 0, :t)", t=stamp)
    _run(app, "INSERT INTO account_tokens (token_hash, purpose, user_id, created_at, expires_at) "
              "VALUES ('link', 'reset', 7, :t, :e)", t=stamp, e=stamp + 3600)
    _migrate(app, migrate_down, "e5f6a7b8c9d0")  # the release before logout
    _migrate(app, migrate_up, "head")
    assert _rows(app, "SELECT backchannel_logout_uri, frontchannel_logout_uri FROM clients") == [(None, None)]
    assert _rows(app, "SELECT count(*) FROM logout_deliveries") == [(0,)]
    assert _rows(app, "SELECT count(*) FROM account_tokens") == [(0,)]
    assert [bool(v) for (v,) in _rows(app, "SELECT email_verified FROM users")] == [False]
    close_connections(app)

    guide = pathlib.Path(__file__).parent.parent / "docs" / "deployment.md"
    paragraph = re.sub(r"\s+", " ", re.search(r"`db downgrade` undoes migrations.*?(?:\n\n|\Z)", guide.read_text(), re.S)[0])
    for lost in ("logout URIs", "logout tokens", "verified", "reset"):
        assert lost in paragraph, lost


def test_giving_sessions_public_ids_is_not_a_statement_a_session(scratch_uri):  # noqa: F811
    """a7c4e2d9b153 gave each existing session its public id by an UPDATE of its own, while ADD
    COLUMN held user_sessions under an ACCESS EXCLUSIVE lock until the upgrade committed: every
    signed-in request of a server still running waited, 32 s at 100,000 sessions on PostgreSQL
    (past the servers' 30 s statement timeout). One executemany: the statements the migration
    sends do not grow with the sessions (7 s at 100,000, most of it building the indexes)."""
    from sqlalchemy import event

    counts = []
    for sessions in (3, 60):
        app = create_app(make_config(scratch_uri))
        _migrate(app, migrate_up, "3b1f0c2d9a47")
        _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
                  "password_changed_at, failed_attempts, locked_until, created_at) VALUES (7, 's', 'bob', 'bob', 'x', 1, 0, 0, 0, 0)")
        for number in range(sessions):
            _run(app, "INSERT INTO user_sessions (sid, user_id, auth_time, created_at) VALUES (:sid, 7, 0, 0)",
                 sid=f"cookie-{number}")
        statements = []
        with app.app_context():
            engine = db.engine
        listener = lambda *args: statements.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            _migrate(app, migrate_up, "a7c4e2d9b153")
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        publics = _rows(app, "SELECT public_sid FROM user_sessions")
        assert len({p for (p,) in publics}) == sessions and all(len(p) >= 32 for (p,) in publics)
        counts.append(len(statements))
        _migrate(app, migrate_down, "base")
        close_connections(app)
    assert counts[1] <= counts[0] + 2, counts


def test_a_user_name_whose_nfkc_key_outgrows_its_column_does_not_stop_the_upgrade(scratch_uri, capfd):  # noqa: F811
    """c3e7a1d5f9b4 rekeys user names and addresses by NFKC_Casefold, which can make a key longer
    ("㍿" is four letters): a name the previous rule let in at 145 characters gets a 165-character
    key, which PostgreSQL refuses for a VARCHAR(150), and the whole `db upgrade` failed, leaving the
    servers refusing to start on the old schema. Such a user keeps the old key and is named in a
    warning, as one whose key another user has; everyone else is rekeyed."""
    app = create_app(make_config(scratch_uri))
    _migrate(app, migrate_up, "d7f3b9e1a5c8")
    long_name = "a" * 140 + "㍿" * 5
    for user_id, name, email in ((7, long_name, "x" * 300 + "㍿" * 5 + "@example.com"), (8, "ＢＯＢ", None)):
        _run(app, "INSERT INTO users (id, subject, username, username_normalized, email, email_normalized, password_hash, "
                  "password_version, password_changed_at, failed_attempts, locked_until, created_at) "
                  "VALUES (:id, :sub, :name, :key, :email, :email_key, 'x', 1, 0, 0, 0, 0)",
             id=user_id, sub=f"s{user_id}", name=name, key=name.casefold(), email=email,
             email_key=email.casefold() if email else None)
    capfd.readouterr()
    _migrate(app, migrate_up, "c3e7a1d5f9b4")  # its log goes to stderr (alembic.ini's handlers)
    warnings = [line.split("] ", 1)[1] for line in capfd.readouterr().err.splitlines() if line.startswith("WARN")]
    assert _rows(app, "SELECT username_normalized FROM users ORDER BY id") == [(long_name.casefold(),), ("bob",)]
    assert _rows(app, "SELECT email_normalized FROM users WHERE id = 7")[0][0] == ("x" * 300 + "㍿" * 5 + "@example.com")
    assert [w.split(" stays ")[0] for w in warnings] == ["users.username_normalized of user id 7",
                                                         "users.email_normalized of user id 7"]
    close_connections(app)


def test_a_migration_that_added_a_column_does_not_hold_its_table_for_the_rest_of_the_upgrade(scratch_uri):  # noqa: F811
    """A run of migrations was one PostgreSQL transaction, so each lock a migration took was held
    until the last one committed: c4e8a2f6d1b3's ADD COLUMN kept authorization_codes under ACCESS
    EXCLUSIVE while e5b9d3f7a1c6 built its index of refresh_tokens, and no server still running
    could read a code (a sign-in) meanwhile: 2.3 s at 2,000,000 refresh tokens. Each migration
    commits on its own now. Here the last build is held up by a writer's open transaction, and a
    read of a code must still answer within a second."""
    app = _read_while_a_writer_holds_the_upgrade(
        scratch_uri, "d4f8b2a6c9e3", "SELECT count(*) FROM authorization_codes WHERE code_hash = 'x'", 0)
    assert _rows(app, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
