"""Review: `flask seed --reset-passwords` against `flask clients remove` of a client the file does
not list, whose codes two of the file's users hold. The seed ends the users' codes one user after
the other; the removal deletes the client's codes in the order it finds them. The seed is held
right after it ended the first user's codes (its transaction open) while the removal runs until it
is done or waits at a lock (PostgreSQL's pg_locks, never by timing), then goes on. PostgreSQL only:
SQLite's one write lock serialises the two. Both must end as if one ran after the other, with no
deadlock (one of the two aborted by PostgreSQL)."""

import json

import pytest
from sqlalchemy import select

from conftest import BOB_PASSWORD, postgresql_only
from identity.clock import now
from identity.extensions import db
from identity.models import AuthorizationCode, Client, RefreshToken, User
from identity.services.passwords import verify_password
from identity.services.seed import apply_seed, load_seed
from races import amid_the_first_unless_queued, other_workers

pytestmark = postgresql_only()

NEW_PASSWORDS = {"alice": "cobalt-meadow-lantern-8135", "bob": "amber-willow-signal-2746"}
SEED_RESETTING_BOTH = {"users": [
    {"username": "alice", "email": "alice@example.com", "name": "Alice Example", "password": NEW_PASSWORDS["alice"]},
    {"username": "bob", "email": "bob@example.com", "name": "Bob Example", "password": NEW_PASSWORDS["bob"]}]}


def _code(user_id: int, nonce: str) -> AuthorizationCode:
    stamp = now()
    return AuthorizationCode(code_hash=f"{nonce:0>64}", client_id="native", user_id=user_id, session_id=None,
                             redirect_uri="http://127.0.0.1/callback", response_type="code", scope="openid",
                             nonce=nonce, auth_time=stamp, created_at=stamp, expires_at=stamp + 600,
                             family_id=f"family-{nonce}", password_version=1)


def _refresh_token(user_id: int, name: str) -> RefreshToken:
    stamp = now()
    return RefreshToken(token_hash=f"{name:0>64}", family_id=f"family-{name}", client_id="native", user_id=user_id,
                        scope="openid offline_access", auth_time=stamp, issued_at=stamp, expires_at=stamp + 3600,
                        password_version=1)


#: a grant of `native` each user holds -> the statement that ends alice's in the seed
GRANTS = {"code": (_code, "UPDATE authorization_codes"), "refresh token": (_refresh_token, "UPDATE refresh_tokens")}


def _grants_of_native_held_by_bob_then_alice(app, grant: str) -> None:
    """A live grant of `native` for each, bob's stored first: the removal finds it first."""
    make = GRANTS[grant][0]
    with app.app_context():
        ids = dict(db.session.execute(select(User.username, User.id)).all())
        db.session.add(make(ids["bob"], "a"))
        db.session.flush()
        db.session.add(make(ids["alice"], "b"))
        db.session.commit()


def seed_resetting_both_amid(app, database_uri, grant: str, command: list[str]):
    """Seed new passwords for alice and bob, held right after the statement that ended alice's
    `grant` while the operator's `command` runs in another worker until it is done or queued;
    the seed's report is checked, the command's result returned. The seed is the service's call,
    not the command's: a CliRunner swaps sys.stdout, and two at once in two threads each wrote
    to the other's output."""
    done = {}
    with other_workers(database_uri) as (other,):
        def run():
            done["command"] = other.test_cli_runner().invoke(args=command)

        with app.app_context(), amid_the_first_unless_queued(app, GRANTS[grant][1], run) as started:
            report = apply_seed(load_seed(json.dumps(SEED_RESETTING_BOTH)), reset_passwords=True)
    assert started == [1]
    assert (report.created, report.updated) == ([], ["user alice (password reset)", "user bob (password reset)"])
    return done["command"]


@pytest.mark.parametrize("grant", GRANTS)
def test_a_seed_that_resets_two_users_does_not_deadlock_with_the_removal_of_their_grants_client(
        app, flow_clients, database_uri, grant):
    """PostgreSQL: the operator seeds new passwords for alice and bob (`--reset-passwords`) while
    another operator removes the `native` app, of which each holds a code (or a refresh token). The
    seed ended alice's and went on to bob's; the removal had deleted bob's and waited for alice's: a deadlock,
    and PostgreSQL aborted one of the two (its command failed, nothing of it written). Now the
    seed takes the rows of the clients whose grants it ends before any user's, as the removal
    takes its client's first: the removal waits for the seed, then removes the client."""
    _grants_of_native_held_by_bob_then_alice(app, grant)
    removed = seed_resetting_both_amid(app, database_uri, grant, ["clients", "remove", "native"])
    assert (removed.exit_code, removed.output) == (0, "Removed client native.\n"), removed.output
    with app.app_context():
        for model in (AuthorizationCode, RefreshToken):
            assert db.session.scalars(select(model.id).where(model.client_id == "native")).all() == []
        assert db.session.scalar(select(Client.client_id).where(Client.client_id == "native")) is None
        users = {user.username: user for user in db.session.scalars(select(User))}
        assert all(verify_password(users[name].password_hash, password) for name, password in NEW_PASSWORDS.items())
        assert not verify_password(users["bob"].password_hash, BOB_PASSWORD)
        db.session.rollback()
