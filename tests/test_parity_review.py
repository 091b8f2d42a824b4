"""The same request on SQLite and on PostgreSQL: the same answer and the same stored state.

SQLite never enforces a VARCHAR's length, PostgreSQL refuses a value past it; SQLite serialises
writes, PostgreSQL runs them at once. Each test runs on whichever database the suite runs on
(FLASK_SQLALCHEMY_DATABASE_URI) and asserts what both must do."""

import json
import os
import time

import pytest
from sqlalchemy import select

from actions import AuthActions
from app import create_app
from conftest import close_connections, csrf_token, make_config
from identity import clock
from identity.extensions import db
from identity.models import AuditEvent, Passkey, User
from identity.services import accounts, passkeys
from identity.services.seed import apply_seed, load_seed
from parity_review_support import ORIGIN, RP_ID, collated_database, register_passkey
from webauthn_keys import SoftKey


@pytest.fixture
def auth(client, seeded):
    return AuthActions(client)


def test_a_passkey_whose_browser_repeats_its_transports_is_registered_with_each_once(client, auth, app):
    # transports are the browser's report, outside what the authenticator signs; py_webauthn
    # keeps every known name it is given, repeats included: 40 of them no longer fit the column
    auth.login()
    created = register_passkey(client, SoftKey(), transports=["hybrid", "internal"] * 20)
    assert created.status_code == 201, f"{created.status_code} {created.get_data(as_text=True)[:200]}"
    with app.app_context():
        stored = db.session.scalar(select(Passkey.transports))
    assert stored.split() == ["hybrid", "internal"]



def test_a_credential_id_past_webauthns_1023_bytes_is_refused_alike(client, auth, app):
    # WebAuthn (§6.1, credentialIdLength; §7.1 step 23): an id longer than 1023 bytes fails the
    # registration. SQLite stored its 1,467 base64url characters; PostgreSQL's column (1,400) refused them
    auth.login()
    key = SoftKey()
    key.credential_id = os.urandom(1100)
    created = register_passkey(client, key)
    assert created.status_code == 400, f"{created.status_code} {created.get_data(as_text=True)[:200]}"
    with app.app_context():
        assert db.session.scalar(select(Passkey.id)) is None
    longest = SoftKey()
    longest.credential_id = os.urandom(1023)  # the longest WebAuthn allows: registered on both
    assert register_passkey(client, longest).status_code == 201


ORDERING_SEED = {
    "api_scopes": [{"name": name} for name in ("Zeta", "api", "_x", "a-b", "ab")],
    "clients": [{"client_id": client_id, "client_secrets": [f"{client_id}-secret-0123456789"],
                 "allowed_grant_types": ["client_credentials"]} for client_id in ("Web", "api", "_svc", "a-b", "ab")],
    "users": [{"username": username, "password": "quartz-lantern-meadow-58"}
              for username in ("fred", "\u00e9va", "_x", "a-b", "ab", "Zoe")],
}


@pytest.fixture(params=["suite", "icu"])
def listing_app(request, database_uri, app):
    """The app on the suite's database, and on PostgreSQL also on one collated as most hosts'
    `createdb` collates (parity_review_support.collated_database)."""
    if request.param == "suite":
        yield app
        return
    if not database_uri.startswith("postgresql"):
        pytest.skip("a collation of the database's own: PostgreSQL only")
    with collated_database(database_uri) as uri:
        other = create_app(make_config(uri))
        yield other
        close_connections(other)


def test_the_cli_lists_users_clients_and_scopes_in_one_order_whatever_the_collation(listing_app):
    # SQLite (and a C-collated PostgreSQL) sort by code point; a PostgreSQL database made under
    # an en_US locale sorted by its language rules: `_x` before `a-b` before `ab`, `Web` after
    # `api`, `éva` before `fred`: the same database content listed in another order
    with listing_app.app_context():
        apply_seed(load_seed(json.dumps(ORDERING_SEED)))
    runner = listing_app.test_cli_runner()
    listed = {}
    for command, key in (("users", "username"), ("clients", "client_id"), ("scopes", "name")):
        result = runner.invoke(args=[command, "list", "--json"])
        assert result.exit_code == 0, result.output
        listed[command] = [item[key] for item in json.loads(result.output)]
    assert listed == {
        "users": ["_x", "a-b", "ab", "fred", "Zoe", "\u00e9va"],  # by the case-folded name's code points
        "clients": ["Web", "_svc", "a-b", "ab", "api"],
        "scopes": ["IdentityServerApi", "Zeta", "_x", "a-b", "ab", "api"],
    }, listed


def test_a_removed_passkeys_id_is_never_given_to_another_passkey(client, auth, app):
    # the audit log names passkeys by their row id (passkey_registered, passkey_used, passkey_removed)
    # and the remove form posts it. On SQLite a table without AUTOINCREMENT gives the next row the
    # largest id plus one, so the newest passkey removed lent its id to the next one registered,
    # anyone's; PostgreSQL's sequence never gives an id twice
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        bob = accounts.create_user("bob", "marble-violet-canyon-482", name="Bob").id
        ceremony = passkeys.registration_options(alice, "https://localhost")
        old = passkeys.register(alice, "https://localhost", ceremony.state,
                                SoftKey().registration(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)).id
        passkeys.remove_passkey(alice, old)
        ceremony = passkeys.registration_options(bob, "https://localhost")
        new = passkeys.register(bob, "https://localhost", ceremony.state,
                                SoftKey().registration(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)).id
    assert new != old, f"bob's passkey took the id {new} of alice's removed one"
    # alice's other tab still shows the form to remove hers: no access-control probe is audited
    auth.login()
    csrf = csrf_token(client.get("/account/mfa").get_data(as_text=True))
    stale = client.post(f"/account/mfa/passkeys/{old}/remove", data={"csrf_token": csrf})
    assert stale.status_code == 404
    with app.app_context():
        refused = db.session.scalar(select(AuditEvent.detail).where(AuditEvent.event == "passkey_removal_refused"))
    assert refused == {"passkey_id": old, "reason": "no_such_passkey"}, refused


@pytest.mark.parametrize("args, row, refusal", [
    (["scopes", "add", "orders"], {"scope": "orders"}, "Error: scope 'orders' already exists"),
    (["clients", "add", "billing", "--grant-type", "client_credentials", "--scope", "IdentityServerApi"],
     {"client": "billing"}, "Error: client 'billing' already exists"),
], ids=["scopes_add", "clients_add"])
def test_an_add_that_meets_the_same_add_committing_meanwhile_says_it_exists(app, runner, seeded, database_uri, args,
                                                                            row, refusal):
    # the same `scopes add` / `clients add` from two terminals: the second passes the existence
    # check before the first commits, and met the unique key: on SQLite "Error: database error:
    # UNIQUE constraint failed: api_scopes.name" (two real commands: 2 tries in 4), where on
    # PostgreSQL the commands mostly took turns and the second said "already exists" (the same
    # interleaving there: 'duplicate key value violates unique constraint "api_scopes_name_key"').
    # `users add` says "already exists" either way (test_twice_review.py)
    from identity.models import ApiScope, Client
    from races import in_thread, lock_waiters, other_workers, wait_until

    results = {}
    with other_workers(database_uri) as (other,), other.app_context():
        if "scope" in row:
            db.session.add(ApiScope(name=row["scope"]))
        else:
            db.session.add(Client(client_id=row["client"], client_name=row["client"], created_at=clock.now(),
                                  allowed_grant_types=["client_credentials"], secret_hashes=["x"]))
        db.session.flush()  # written, not committed: the other command is between its INSERT and its COMMIT
        command = in_thread(results, "command", lambda: runner.invoke(args=args))
        started = time.monotonic()
        wait_until(lambda: not command.is_alive() or (
            lock_waiters(app) >= 1 if database_uri.startswith("postgresql") else time.monotonic() - started > 1))
        db.session.commit()
    command.join(30)
    result = results["command"]
    assert (result.exit_code, result.output.strip()) == (1, refusal), result.output
