"""Review: the siblings of recent fixes, a second pass. A fix made on one path (a right code
taken for a wrong one when the app was removed between its read and its spending, 44b2e52; a
check made before a lock and not again under it; a message that tells the user nothing) often
has a twin on another path or front door (the page, the local API, the CLI, the token endpoint)
that it did not reach, or brings a defect of its own. Each test makes the other request commit at
a chosen point, by a hook on a service call or a statement (tests/races.py), never by timing; the
answer must be one the two, run one after the other in some order, would have given."""

import threading

import pytest
from sqlalchemy import event, select, update

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import accounts, mfa, passkeys
from identity.store import accounts as user_rows
from identity.web.second_factor import FACTORS_REMOVED
from mfa_actions import code_at, enrol_user, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first, in_own_context, lock_waiters, wait_until
from webauthn_keys import SoftKey

NEW_PASSWORD = "a-long-new-passphrase-here"
ISSUER, RP_ID = "https://localhost", "localhost"  # the test client's (tests/test_passkeys_web.py)


def audited(*names: str) -> list[str]:
    """These audit events as recorded, oldest first."""
    return list(db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)))


def started_unless_queued(app, call, results: dict) -> threading.Thread:
    """Start `call` in another thread, in an app context of its own (its result in results["done"]),
    and wait until it ends or waits for a lock (PostgreSQL). On SQLite the caller's transaction,
    having written, holds the database's one write lock: `call` then commits only after it."""
    other = threading.Thread(target=in_own_context(app, call, results), daemon=True)
    other.start()
    if db.engine.dialect.name != "sqlite":
        wait_until(lambda: not other.is_alive() or lock_waiters(app) > 0, timeout=60)
    return other


@pytest.mark.parametrize("page", ["password", "email"])
def test_a_right_code_given_with_a_change_as_the_app_is_removed_is_not_counted(app, seeded, client, mail, step_clock,
                                                                               monkeypatch, page):
    """alice changes her password (or her address) on the page, with the code her app shows, while
    the operator runs `users mfa-reset alice` (she reported the phone lost), or she removes the app
    in another browser. The change read the code against the app's row, then spent it with a
    conditional UPDATE of that row; the removal, committed between the two, left no row to change,
    and that was taken for a wrong code: she was told the code was not right, the right code was
    counted toward her lockout and audited as a bad one (mfa_failed). The change holds her row from
    before the code's read to its commit, and the removal now takes that row first (5b3c8ba): it
    waits, and the change goes through with her code, counting nothing."""
    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app, "alice")  # after the sign-in: this session did not use it
    form_page = client.get(f"/account/{page}")
    token = csrf_token(form_page.get_data(as_text=True))
    with app.app_context():
        version = db.session.scalar(select(User.password_version).where(User.username == "alice"))
    reading, removed, others = mfa._spending, {}, []

    def removed_after_the_read(user_id, *args, **kwargs):
        spending = reading(user_id, *args, **kwargs)
        if not others:
            others.append(started_unless_queued(app, lambda: mfa.reset_factors(user_id), removed))
        return spending

    monkeypatch.setattr(mfa, "_spending", removed_after_the_read)
    if page == "password":
        answer = client.post("/account/password", data={
            "csrf_token": token, "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD, "otp": code_at(secret)})
    else:
        answer = client.post("/account/email", data={
            "change-csrf_token": token, "change-email": "alice@example.org",
            "change-current_password": ALICE_PASSWORD, "change-otp": code_at(secret)})
    for other in others:
        other.join(60)
    body = answer.get_data(as_text=True)
    with app.app_context():
        assert removed.get("done") is True, removed
        alice = db.session.scalars(select(User).where(User.username == "alice")).one()
        assert answer.status_code == 200, body[-800:]  # the removal waited for the change's commit
        assert (alice.password_version, alice.pending_email) in ((version + 1, None), (version, "alice@example.org"))
        assert (alice.failed_attempts, audited("mfa_failed")) == (0, [])


def test_a_passkey_second_step_as_the_factors_are_removed_is_not_counted(app, client, seeded):
    """alice, her password typed, answers the second step with her passkey while the operator runs
    `users mfa-reset alice` (or she removes the passkey in another browser). The step read the
    passkey, then recorded its use; the removal, committed between the two, left it unknown: her
    passkey was refused ("could not be verified"), the attempt was counted toward her lockout, and
    she was kept on a second step her account no longer has. A code typed as the app is removed is
    answered by sending her back to the password, which alone signs her in now, counting nothing
    (44b2e52); so must a passkey be."""
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        key, ceremony = SoftKey(), passkeys.registration_options(alice, ISSUER)
        passkeys.register(alice, ISSUER, ceremony.state,
                          key.registration(ceremony.state["challenge"], origin=ISSUER, rp_id=RP_ID))
        db.session.remove()
    assert AuthActions(client).login().headers["Location"].startswith("/account/login/mfa")
    csrf = csrf_token(client.get("/account/login/mfa").get_data(as_text=True))
    options = client.post("/account/login/mfa/passkey/options", headers={"X-CSRFToken": csrf}).get_json()
    answer = key.assertion(options["challenge"], origin=ISSUER, rp_id=RP_ID)
    removed: dict = {}
    with app.app_context():
        the_reset = in_own_context(app, lambda: mfa.reset_factors(alice), removed)
        with amid_the_first("passkeys.credential_id =", the_reset) as started:
            step = client.post("/account/login/mfa/passkey", data={"csrf_token": csrf, "credential": answer})
        assert started and removed.get("done") is True, removed
        counted = db.session.scalar(select(User.failed_attempts).where(User.id == alice))
    assert (step.status_code, counted) == (302, 0), step.get_data(as_text=True)[-600:]
    assert step.headers["Location"].startswith("/account/login")
    assert FACTORS_REMOVED in client.get(step.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("command", ["enable", "unlock"])
def test_users_enable_or_unlock_on_a_user_removed_right_after_its_commit_says_what_it_did(app, runner, seeded,
                                                                                          command):
    """`users enable alice` (or `users unlock alice`) while another operator's `users remove alice`
    runs, the removal committed right after the command's own commit. The command then read the
    user's name for its message from the row (the ORM reloads what a commit expired), found none,
    and ended in SQLAlchemy's traceback after it had enabled (unlocked) her, as `users
    set-password` did before 63f8ca4. The two, one after the other, enabled her and then removed
    her: the command says it enabled her."""
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(enabled=False, failed_attempts=3))
        db.session.commit()
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        removed: dict = {}

        def removed_after_the_commit(session):
            if not removed:
                removed["started"] = True
                thread = threading.Thread(target=in_own_context(app, lambda: accounts.remove_user("alice"), removed))
                thread.start()
                thread.join(60)

        event.listen(db.session, "after_commit", removed_after_the_commit)
        try:
            result = runner.invoke(args=["users", command, "alice"])
        finally:
            event.remove(db.session, "after_commit", removed_after_the_commit)
        assert removed.get("done", "not run") is None, removed
        expected = "User alice is now enabled.\n" if command == "enable" else "User alice unlocked.\n"
        assert (result.exit_code, result.output) == (0, expected), repr(result.exception)
        assert db.session.get(User, alice) is None


def test_an_app_confirmed_as_another_browser_restarts_its_set_up_is_not_another_secret(app, client, seeded, step_clock,
                                                                                      monkeypatch):
    """alice sets up her authenticator app in one browser and clicks Confirm with the code her
    phone shows, while her other browser (or tab) starts the set-up again, which replaces the
    secret being set up. The confirmation read the secret and judged the code by it, then
    confirmed whatever set-up was pending: the other browser's, committed between the two. She was
    told her app was set up and given recovery codes, but the account now expects codes of a
    secret her phone never saw: her next sign-in's codes are refused (and counted toward her
    lockout), and only a recovery code lets her in. The two, one after the other: the restart
    ends the set-up she was confirming, and her Confirm is refused, nothing set up."""
    from identity.store import mfa as mfa_rows
    from mfa_actions import SECRET_RE, post_mfa

    assert AuthActions(client).login().status_code == 302
    started = post_mfa(client, "start")
    secret = SECRET_RE.search(started.get_data(as_text=True)).group(1)
    locking, restarted = mfa.first_factor_locked, {}

    def restarted_before_the_lock(user_id):
        if not restarted:
            thread = threading.Thread(target=in_own_context(app, lambda: mfa.start_totp(user_id), restarted))
            thread.start()
            thread.join(60)
        return locking(user_id)

    monkeypatch.setattr(mfa, "first_factor_locked", restarted_before_the_lock)
    confirmed = post_mfa(client, "confirm", code=code_at(secret))
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        stored, confirmed_at, _ = mfa_rows.totp_row(alice)
        set_up = confirmed_at is not None
        assert isinstance(restarted.get("done"), str) and restarted["done"] != secret, restarted
        assert (confirmed.status_code, set_up) == (409, False), confirmed.get_data(as_text=True)[-800:]
        assert mfa._secret(stored, alice) == restarted["done"]  # the other browser's set-up, still pending
    assert "No authenticator app is being set up in this browser; start again" in confirmed.get_data(as_text=True)


def test_an_app_confirmed_as_the_operator_reencrypts_the_secrets_is_set_up(app, client, seeded, step_clock,
                                                                         monkeypatch):
    """alice clicks Confirm on her authenticator app's set-up, with the code her phone shows, at
    the moment the operator runs `keys reencrypt` (the second step of a key-encryption-key
    rotation), which stores every app secret, pending ones too, encrypted anew: the same secret,
    another ciphertext. The confirmation (since 371f03b) set the app up only if the stored
    ciphertext was still the one it had read, and told her the set-up had been started again in
    another browser: nothing had been, and nothing was set up."""
    from identity.services import keys
    from mfa_actions import SECRET_RE, post_mfa

    assert AuthActions(client).login().status_code == 302
    started = post_mfa(client, "start")
    secret = SECRET_RE.search(started.get_data(as_text=True)).group(1)
    locking, reencrypted = mfa.first_factor_locked, {}

    def reencrypted_before_the_lock(user_id):  # committed on another connection as the confirmation runs
        if not reencrypted:
            thread = threading.Thread(target=in_own_context(app, keys.reencrypt, reencrypted))
            thread.start()
            thread.join(60)
        return locking(user_id)

    monkeypatch.setattr(mfa, "first_factor_locked", reencrypted_before_the_lock)
    confirmed = post_mfa(client, "confirm", code=code_at(secret))
    assert reencrypted.get("done") is not None and reencrypted["done"][1] == 1, reencrypted
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        assert (confirmed.status_code, mfa.has_totp(alice)) == (200, True), confirmed.get_data(as_text=True)[-800:]


def removed_before_the_code_takes_the_user(app, monkeypatch) -> dict:
    """From now on, the next code proven for a change (mfa._spend_with_change) finds alice's
    factors removed by `users mfa-reset` (on another connection, committed) right before it takes
    her row: after the page asked whether a code was needed. The reset's result: "done"."""
    locking, removed = user_rows.lock_user_row, {}

    def removed_first(user_id):
        if not removed:
            removed["started"] = True
            thread = threading.Thread(target=in_own_context(app, lambda: mfa.reset_factors(user_id), removed))
            thread.start()
            thread.join(60)
        return locking(user_id)

    monkeypatch.setattr(user_rows, "lock_user_row", removed_first)
    return removed


def test_removing_the_app_as_another_browser_removes_it_says_it_is_not_set_up(app, client, seeded, step_clock,
                                                                              monkeypatch):
    """alice removes her authenticator app on the factors page (her password and a code) while her
    other browser removes it too, or the operator runs `users mfa-reset alice`. The page found the
    app, then checked her code under her row's lock; the other removal, committed between the two,
    left no app, and the removal was refused as a wrong code (counted toward her lockout before
    ffdce0d) on a page that no longer draws the code field the message goes to: a 400 that said
    nothing at all. Run after the other removal, the page says no app is set up; so must it when
    the two meet."""
    from mfa_actions import post_mfa

    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app, "alice")
    removed = removed_before_the_code_takes_the_user(app, monkeypatch)
    answer = post_mfa(client, "remove", password=ALICE_PASSWORD, code=code_at(secret))
    body = answer.get_data(as_text=True)
    with app.app_context():
        assert removed.get("done") is True, removed
        counted = db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))
    told_why = '<div class="alert__body">No authenticator app is set up.</div>' in body
    assert (answer.status_code, told_why, counted) == (409, True, 0), body[-1500:]


def test_new_recovery_codes_asked_as_the_app_is_removed_say_why_they_are_not_made(app, client, seeded, step_clock,
                                                                                  monkeypatch):
    """alice asks for new recovery codes (with a code from her app) while her other browser removes
    the app, or the operator runs `users mfa-reset alice`. The page asked for a code (the app was
    there), and the code, checked after the removal committed, found no app: refused (counted
    before ffdce0d), with its message beside the code field,
    which the page, finding no app, no longer draws: a 403 that said nothing at all. Run after the
    removal, the page says to set up an app first; so must it when the two meet."""
    from mfa_actions import post_mfa

    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app, "alice")
    removed = removed_before_the_code_takes_the_user(app, monkeypatch)
    answer = post_mfa(client, "regenerate", otp=code_at(secret))
    body = answer.get_data(as_text=True)
    with app.app_context():
        assert removed.get("done") is True, removed
        counted = db.session.scalar(select(User.failed_attempts).where(User.username == "alice"))
    told_why = '<div class="alert__body">Set up an authenticator app first.</div>' in body
    assert (answer.status_code, told_why, counted) == (409, True, 0), body[-1500:]
