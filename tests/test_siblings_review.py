"""Review: the siblings of recent fixes. A fix made in one place (a read judged after another
request's commit, a check made before the lock and not again under it, a command that meets a
user removed meanwhile) often has a twin on another path, or another front door, that the fix
did not reach. Each test makes the other request commit at a chosen point, by a hook on a
service call or a statement (tests/races.py), never by timing; the answer must be one the two,
run one after the other in some order, would have given."""

import threading

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import accounts, mfa
from identity.store import accounts as user_rows
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first, amid_the_first_unless_queued, in_own_context

NEW_PASSWORD = "a-long-new-passphrase-here"


def user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def audited(*names: str) -> list[str]:
    """These audit events as recorded, oldest first."""
    return list(db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)))


def run_in_own_context(app, call) -> dict:
    """Run `call` to its end in another thread, in an app context (and session) of its own: its
    result, or the exception it raised, in the dict returned under "done"."""
    results: dict = {}
    thread = threading.Thread(target=in_own_context(app, call, results))
    thread.start()
    thread.join(60)
    return results


def test_set_password_on_a_user_removed_meanwhile_says_no_such_user(app, runner, seeded):
    """`users set-password alice` while another operator's `users remove alice` runs. The command
    found the user by name, judged and hashed the new password, then wrote it to the object it had
    found: the removal, committed between the two, left no row, and the command ended in
    SQLAlchemy's traceback (an UPDATE that matched no row) instead of "no user 'alice'", the
    answer when run after the removal."""
    with app.app_context():
        removed: dict = {}

        def the_removal():
            removed.update(run_in_own_context(app, lambda: accounts.remove_user("alice")))

        with amid_the_first("users.username_normalized =", the_removal) as started:
            result = runner.invoke(args=["users", "set-password", "alice"], input=NEW_PASSWORD + "\n")
        assert started and "done" in removed and removed["done"] is None, removed
        assert (result.exit_code, result.output) == (1, "Error: no user 'alice'\n"), repr(result.exception)


def test_set_password_on_a_user_removed_right_after_its_commit_says_the_password_was_set(app, runner, seeded,
                                                                                          monkeypatch):
    """The same two commands, the removal committed right after set-password's own commit: the
    command then read the user's address for its notice from the row, found none, and ended in
    SQLAlchemy's traceback after the password had been set. The two, one after the other, set
    the password and then removed the user: the command says it set it."""
    counting = accounts.metrics.count_password_change
    removed: dict = {}

    def removed_after_the_commit(channel):
        counting(channel)
        if not removed:
            removed.update(run_in_own_context(app, lambda: accounts.remove_user("alice")))

    monkeypatch.setattr(accounts.metrics, "count_password_change", removed_after_the_commit)
    with app.app_context():
        result = runner.invoke(args=["users", "set-password", "alice"], input=NEW_PASSWORD + "\n")
        assert "done" in removed and removed["done"] is None, removed
        assert (result.exit_code, result.output) == (
            0, "Password set for alice; their sessions and refresh tokens were revoked.\n"), repr(result.exception)
        assert audited("password_set", "user_removed") == ["password_set", "user_removed"]


def test_a_client_update_on_a_client_removed_meanwhile_says_no_such_client(app, runner, seeded):
    """`clients update spa --name ...` while another operator's `clients remove spa` runs. The
    update read the client, validated the change, then wrote it to the object it had read: the
    removal, committed between the two, left no row, and the command ended in SQLAlchemy's
    traceback (an UPDATE that matched no row) instead of "no client 'spa'", the answer when run
    after the removal (and the answer `clients disable` gives, which locks the row first)."""
    from identity.models import Client
    from identity.services import clients

    with app.app_context():
        removed: dict = {}

        def the_removal():
            removed.update(run_in_own_context(app, lambda: clients.remove_client("spa")))

        with amid_the_first_unless_queued(app, "FROM clients", the_removal) as started:
            result = runner.invoke(args=["clients", "update", "spa", "--name", "Single page"])
        assert started and "done" in removed and removed["done"] is None, removed
        # the removal first, or the update first and then the removal
        assert (result.exit_code, result.output) in (
            (1, "Error: no client 'spa'\n"), (0, "Updated client spa: client_name.\n")), repr(result.exception)
        assert db.session.scalar(select(Client.id).where(Client.client_id == "spa")) is None


@pytest.mark.parametrize("removed_when", ["before the reset takes the user", "while the reset runs"])
def test_mfa_reset_on_a_user_removed_meanwhile_says_no_such_user(app, runner, seeded, mail, step_clock,
                                                                  monkeypatch, removed_when):
    """`users mfa-reset alice` (a lost phone) while another operator's `users remove alice` runs.
    The command found the user, asked whether they had a second factor, removed what was there,
    then read the user's address for the notice. The removal, committed after the question, left
    no row to read: a traceback (ObjectDeletedError) after an `mfa_reset` audited for a user
    already removed; committed before it, the command said "alice had no second factor." Now a
    removal committed before the reset takes the user's row is told as "no user 'alice'", the
    answer when run after the removal; one sent while the reset runs waits for it."""
    enrol_user(app)
    removed: dict = {}
    if removed_when.startswith("before"):
        locking, sent = user_rows.lock_user_row, []

        def removed_before_the_lock(user_id):
            if not sent:
                sent.append(1)
                removed.update(run_in_own_context(app, lambda: accounts.remove_user("alice")))
            return locking(user_id)

        monkeypatch.setattr(user_rows, "lock_user_row", removed_before_the_lock)
        with app.app_context():
            result = runner.invoke(args=["users", "mfa-reset", "alice"])
            assert removed["done"] is None, removed
            assert (result.exit_code, result.output) == (1, "Error: no user 'alice'\n"), repr(result.exception)
            assert audited("mfa_reset", "user_removed") == ["user_removed"]
        return
    removal = in_own_context(app, lambda: accounts.remove_user("alice"), removed)
    with app.app_context():
        with amid_the_first_unless_queued(app, "DELETE FROM totp_factors", removal) as started:
            result = runner.invoke(args=["users", "mfa-reset", "alice"])
        assert started and removed["done"] is None, removed
        assert (result.exit_code, result.output) == (0, "Removed the second factors of alice.\n"), repr(result.exception)
        assert audited("mfa_reset", "user_removed") == ["mfa_reset", "user_removed"]


def test_a_right_code_typed_as_the_app_is_removed_is_not_counted_as_a_wrong_one(app, client, seeded, step_clock,
                                                                               monkeypatch):
    """alice types the code her app shows on the second sign-in step while the operator runs
    `users mfa-reset alice` (she reported the phone lost), or she removes the app in another
    browser. The step checked the code against the app, then spent it with a conditional UPDATE of
    the app's row; the removal, committed between the two, left no row to change, and that was
    taken for a code spent already: she was told "That code is not right", and the right code was
    counted toward her lockout and audited as a bad one. After the removal the step sends her back
    to the password, which alone signs her in now, counting nothing (as 8a1e4cf answers a passkey
    removed while it signs in)."""
    from identity.web.mfa import CODE_FAILED
    from identity.web.second_factor import FACTORS_REMOVED

    secret, _ = enrol_user(app)
    assert password_step(client).headers["Location"].startswith("/account/login/mfa")
    checking = mfa.check_code
    removed: dict = {}

    def removed_after_the_check(user_id, *args, **kwargs):
        check = checking(user_id, *args, **kwargs)
        if not removed:
            removed.update(run_in_own_context(app, lambda: mfa.reset_factors(user_id)))
        return check

    monkeypatch.setattr(mfa, "check_code", removed_after_the_check)
    answer = second_step(client, code_at(secret))
    assert removed["done"] is True, removed
    with app.app_context():
        counted = db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))
        told_wrong = CODE_FAILED in answer.get_data(as_text=True)
        assert (answer.status_code, told_wrong, counted) == (302, False, 0)
        assert audited("mfa_failed", "mfa_reset") == ["mfa_reset"]
    assert answer.headers["Location"].startswith("/account/login")
    assert FACTORS_REMOVED in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_a_code_typed_as_every_factor_is_removed_before_it_is_read_is_not_counted(app, client, seeded, step_clock,
                                                                                  monkeypatch):
    """As above, with the removal committed a moment earlier: after the step found alice with a
    second factor, before her code was read against it. Finding no app to check the code
    against, the step counted it toward her lockout and audited it as a bad code, then sent her
    back to the password; a step that finds the removal first counts nothing."""
    from identity.web.second_factor import FACTORS_REMOVED

    secret, _ = enrol_user(app)
    assert password_step(client).headers["Location"].startswith("/account/login/mfa")
    reading = mfa._spending
    removed: dict = {}

    def removed_before_the_read(user_id, *args, **kwargs):
        if not removed:
            removed.update(run_in_own_context(app, lambda: mfa.reset_factors(user_id)))
        return reading(user_id, *args, **kwargs)

    monkeypatch.setattr(mfa, "_spending", removed_before_the_read)
    answer = second_step(client, code_at(secret))
    assert removed["done"] is True, removed
    with app.app_context():
        counted = db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))
        assert (answer.status_code, counted) == (302, 0)
        assert audited("mfa_failed", "mfa_reset") == ["mfa_reset"]
    assert answer.headers["Location"].startswith("/account/login")
    assert FACTORS_REMOVED in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_a_code_typed_as_the_app_is_removed_is_not_counted_while_a_passkey_remains(app, client, seeded, step_clock,
                                                                                   monkeypatch):
    """As above, for a user who has a passkey besides the app: the app removed in another browser
    just before the code is read. No code could pass any more, so none is counted; the step stays
    (her passkey still signs her in) and says the code did not work."""
    from identity.services import passkeys
    from identity.store import mfa as mfa_rows
    from identity.web.mfa import CODE_FAILED
    from webauthn_keys import SoftKey

    secret, _ = enrol_user(app)
    with app.app_context():
        alice = user_id("alice")
        ceremony, key = passkeys.registration_options(alice, "https://id.example.com"), SoftKey()
        passkeys.register(alice, "https://id.example.com", ceremony.state,
                          key.registration(ceremony.state["challenge"], origin="https://id.example.com",
                                           rp_id="id.example.com"))
        db.session.remove()
    assert password_step(client).headers["Location"].startswith("/account/login/mfa")
    reading = mfa._spending
    removed: dict = {}

    def the_app_removed(user_id):
        mfa_rows.delete_totp_and_codes(user_id)
        db.session.commit()

    def removed_before_the_read(user_id, *args, **kwargs):
        if not removed:
            removed.update(run_in_own_context(app, lambda: the_app_removed(user_id)))
        return reading(user_id, *args, **kwargs)

    monkeypatch.setattr(mfa, "_spending", removed_before_the_read)
    answer = second_step(client, code_at(secret))
    assert "done" in removed and removed["done"] is None, removed
    with app.app_context():
        counted = db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))
        assert (answer.status_code, counted) == (400, 0), answer.get_data(as_text=True)[-600:]
        assert CODE_FAILED in answer.get_data(as_text=True)
        assert audited("mfa_failed") == []
