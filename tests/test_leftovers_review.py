"""Review: four small items the last session noted and left alone. A password or code checked
for a signed-in user whom the operator removed during the request was refused as if the account
were locked (an audit row "locked" for a user who no longer exists, a "too many attempts" answer);
the commands' own look-ups of a missing user (`sessions list|end`, `users mfa-reset`) and `clients
remove` of a client registered again during its wait returned with a read transaction open; and a
refresh token's rotation racing `users remove` had no test (and one racing a password set by the
operator was taken for a reuse). Each test makes the other action happen at a chosen point (a
hook on a service call), never by timing, on the real database, and asserts on what the user or
operator sees and on what is stored."""

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import accounts, lockout
from mfa_actions import code_at, enrol_user, post_mfa, step_clock  # noqa: F401  (the fixture)
from races import in_own_context
from test_passkeys_web import register_over_http
from test_small_review import (ALICE, SERVICE_WITHOUT_ORDERS, StoppedClock, alice_removed_before_the_first_call, audited,
                               idle_in_transaction)
from webauthn_keys import SoftKey


def alice_gone(app) -> bool:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == ALICE)) is None


# --- 1. a password or code checked for a user removed meanwhile -----------------------------------


def test_an_apps_removal_whose_user_is_removed_meanwhile_is_not_refused_as_locked(app, client, seeded, step_clock,
                                                                                 monkeypatch):
    """alice, signed in, asked to remove her authenticator app (her password and a code) as the
    operator's `flask users remove alice` committed. Her password's attempt could not be counted
    (no row), and was taken for a locked account's: the page said "Too many wrong attempts. Try
    again in 1 seconds." and the audit log recorded a refused password, reason "locked", for a
    user who no longer exists. She is told her account is not there, and nothing is recorded."""
    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app)
    removed = alice_removed_before_the_first_call(monkeypatch, app, lockout, "reserve")  # (the password's check)
    answer = post_mfa(client, "remove", password=ALICE_PASSWORD, code=code_at(secret))
    assert removed["done"] is None, removed
    page = answer.get_data(as_text=True)
    assert (answer.status_code, "Too many wrong attempts" in page, "No such user." in page) == (409, False, True)
    assert alice_gone(app)
    with app.app_context():
        assert audited("user_removed", "mfa_failed") == ["user_removed"]


def start_passkey_removal(app, client) -> tuple[str, int]:
    """alice signed in with her password, with a passkey (her first factor) and then an app set up
    elsewhere: removing the passkey needs a code. Her app's secret and the passkey's id."""
    from identity.models import Passkey

    assert AuthActions(client).login().status_code == 302
    assert register_over_http(client, SoftKey()).status_code == 201
    secret, _ = enrol_user(app)
    with app.app_context():
        return secret, db.session.scalar(select(Passkey.id))


def remove_passkey(client, passkey_id: int, otp: str):
    page = client.get("/account/mfa").get_data(as_text=True)
    return client.post(f"/account/mfa/passkeys/{passkey_id}/remove", data={"csrf_token": csrf_token(page), "otp": otp})


@pytest.mark.parametrize("door", ["new recovery codes", "a passkey's removal"])
def test_a_code_given_for_a_change_whose_user_is_removed_meanwhile_is_not_refused_as_locked(app, client, seeded,
                                                                                           step_clock, monkeypatch,
                                                                                           door):
    """alice, signed in with her password alone, asked for new recovery codes (or to remove a
    passkey) with a code from her app, as the operator's `flask users remove alice` committed.
    The code's attempt could not be counted (no row), and was taken for a locked account's: the
    page said "Too many wrong attempts" and the audit log recorded a refused code, reason
    "locked", for a user who no longer exists. She is told the account (or the passkey) is not
    there, and nothing is recorded."""
    secret, passkey_id = start_passkey_removal(app, client)
    removed = alice_removed_before_the_first_call(monkeypatch, app, lockout, "reserve")  # (the code's check)
    if door == "new recovery codes":
        answer = post_mfa(client, "regenerate", otp=code_at(secret))
        told = (409, "No such user.")
    else:
        answer = remove_passkey(client, passkey_id, code_at(secret))
        told = (404, "That passkey was removed already")
    assert removed["done"] is None, removed
    page = answer.get_data(as_text=True)
    assert (answer.status_code, told[1] in page, "Too many wrong attempts" in page) == (told[0], True, False), \
        (answer.status_code, answer.headers.get("Location"))
    assert alice_gone(app)
    with app.app_context():
        assert audited("user_removed", "mfa_failed") == ["user_removed"]


def test_a_sign_in_whose_user_is_removed_as_her_lock_ends_is_refused_as_unknown(app, client, seeded, monkeypatch):
    """alice, locked out, tried her password as the operator ran `flask users unlock alice` and
    then `flask users remove alice`: the sign-in's one-statement reservation was refused (she was
    locked), its second look found her unlocked, and its reservation found no row. That was taken
    for a lock: the audit log recorded a refused sign-in, reason "locked", against the id of a user
    who no longer exists (and the lockouts' metric counted it). The page's answer is the same
    whatever the reason; the sign-in is now recorded as of an unknown user, as it would be a
    moment later."""
    from identity.services import user_status

    with app.app_context():
        db.session.execute(update(User).where(User.username == ALICE).values(locked_until=2 ** 31 - 1))
        db.session.commit()
    reserving_by_login, unlocked = lockout.reserve_by_login, {}

    def refused_then_unlocked(key):
        found = reserving_by_login(key)
        in_own_context(app, lambda: user_status.unlock_user(ALICE), unlocked)()
        return found

    monkeypatch.setattr(lockout, "reserve_by_login", refused_then_unlocked)
    removed = alice_removed_before_the_first_call(monkeypatch, app, lockout, "reserve")
    answer = AuthActions(client).login()
    assert removed["done"] is None and not isinstance(unlocked["done"], Exception), (removed, unlocked)
    assert answer.status_code == 400 and "The user name or password is incorrect" in answer.get_data(as_text=True)
    with app.app_context():
        failed = db.session.execute(select(AuditEvent.user_id, AuditEvent.detail)
                                    .where(AuditEvent.event == "sign_in_failed")).all()
    assert [(user_id, detail.get("reason")) for user_id, detail in failed] == [(None, "unknown_user")]


# --- 2. the commands' own look-up of a missing user ----------------------------------------------


@pytest.mark.parametrize("args", [["sessions", "list", "nobody"], ["sessions", "end", "nobody"],
                                  ["users", "mfa-reset", "nobody"]], ids=" ".join)
def test_a_command_that_finds_no_user_ends_its_read(app, runner, seeded, args):
    """`flask sessions list nobody` (or `sessions end`, `users mfa-reset`) answered "no user
    'nobody'" and returned with the read that looked for her still open: the commands looked the
    user up themselves, not with the services' look-up that ends its transaction before it says
    there is no such user (accounts.existing_user). Harmless as the command exits, but a caller
    of the same code in a process that goes on (a script, a test, a shell) held a transaction
    open, on PostgreSQL a backend idle in a transaction, as `users unlock` no longer does."""
    with app.app_context():  # the command runs in this context (flask's with_appcontext reuses it)
        result = runner.invoke(args=args)
        assert (result.exit_code, result.output) == (1, "Error: no user 'nobody'\n"), repr(result.exception)
        assert (db.session().in_transaction(), idle_in_transaction(app)) == (False, 0)


# --- 3. a client registered again during `clients remove`'s wait --------------------------------


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 60}])
def test_a_removal_whose_client_is_registered_again_during_its_wait_ends_its_read(app, runner, seeded, monkeypatch):
    """`flask clients remove service` waits out the workers' client snapshots after its commit,
    then deletes what was issued to the old client meanwhile, unless the id was registered again
    (`clients add service`, a seed) during the wait: what is issued then is the new client's. In
    that case it returned with the read that found the new registration still open (on
    PostgreSQL a backend idle in a transaction) until the command's app context ended. The new
    registration and what it holds are kept, as before."""
    from identity.models import Client
    from identity.services import clients

    clock, added = StoppedClock(), {}
    waiting = clock.sleep

    def registered_again_during_the_wait(seconds):
        waiting(seconds)
        in_own_context(app, lambda: clients.add_client(SERVICE_WITHOUT_ORDERS, generate_secret=False), added)()

    clock.sleep = registered_again_during_the_wait
    monkeypatch.setattr(clients, "time", clock)
    with app.app_context():  # the command runs in this context (flask's with_appcontext reuses it)
        result = runner.invoke(args=["clients", "remove", "service"])
        assert result.output == "Removed client service.\n", repr(result.exception)
        assert not isinstance(added.get("done", "not run"), (Exception, str)), added
        assert (db.session().in_transaction(), idle_in_transaction(app)) == (False, 0)
        assert db.session.scalar(select(Client.client_name).where(Client.client_id == "service")) == "Back-end Service"


# --- 4. a refresh token's rotation racing `users remove` -----------------------------------------


def stored_for_the_race(app) -> dict:
    """What a rotation or a removal writes, as committed: refresh tokens (all users), access
    tokens on the revocation list, and the audit log's events."""
    from identity.models import RefreshToken, RevokedAccessToken

    with app.app_context():
        return {"refresh tokens": list(db.session.execute(select(RefreshToken.user_id, RefreshToken.consumed_at,
                                                                 RefreshToken.revoked_at))),
                "revoked access tokens": sorted(db.session.scalars(select(RevokedAccessToken.jti))),
                "audit": list(db.session.execute(select(AuditEvent.event, AuditEvent.user_id, AuditEvent.detail)
                                                 .order_by(AuditEvent.id)))}


#: what the operator runs as the rotation is under way, by the name the test is shown with
OPERATOR_MEANWHILE = {
    "users remove": lambda: accounts.remove_user(ALICE),
    "users set-password": lambda: accounts.set_password(ALICE, "lantern-orchid-basalt-482") and None,
}


@pytest.mark.parametrize("command", OPERATOR_MEANWHILE)
def test_a_refresh_token_rotated_as_the_operator_ends_it_is_refused_and_not_called_a_reuse(app, client, flow_clients,
                                                                                           monkeypatch, command):
    """An app refreshed alice's token as the operator ran `flask users remove alice` (or `users
    set-password alice`, which revokes her refresh tokens, as a password change, a reset, `users
    disable` or the app's revocation does): the rotation had read the token (and alice) before
    the command committed, and its write came after it. The app must be told `invalid_grant` (not
    a 500), and the rotation must write nothing: no refresh token of hers comes back or is used,
    no token (hers or another's) is revoked anew, and no event is recorded, such as a reuse of
    her token (a security alert, and a count in the reuse metric), which it was not: its row was
    deleted, or revoked unused."""
    from identity.services import issued_grants

    AuthActions(client).login()
    oauth = OAuthActions(client)
    token, _ = oauth.code_flow(client_id="native", scope="openid offline_access")
    refresh_token = token.get_json()["refresh_token"]
    rotating, ran, after_the_command = issued_grants.rotate_refresh_token, {}, {}

    def command_before_the_write(*args, **kwargs):
        if not ran:
            in_own_context(app, OPERATOR_MEANWHILE[command], ran)()
            after_the_command.update(stored_for_the_race(app))
        return rotating(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "rotate_refresh_token", command_before_the_write)
    answer = oauth.token("native", grant_type="refresh_token", refresh_token=refresh_token)
    assert ran.get("done", "not run") is None, ran
    assert (answer.status_code, (answer.get_json() or {}).get("error")) == (400, "invalid_grant"), \
        answer.get_data(as_text=True)[:300]
    stored = stored_for_the_race(app)
    assert [row for row in stored["refresh tokens"] if row.consumed_at is not None] == []
    assert stored == after_the_command, stored["audit"][-3:]
    if command == "users remove":
        assert stored["refresh tokens"] == []
