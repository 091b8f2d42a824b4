"""Review: `flask seed` against a code redemption of a user whose row the seed holds. A seed that
moves a user to another address and resets her password (`--reset-passwords`) or disables her
(`enabled: false`) ends her codes, refresh tokens and sessions in its one transaction; the phone's
app redeems one of her codes as the seed runs. The seed is paused right after it took its rows'
locks (a hook on the step that takes them), the redemption is let run until it is done or waits
at a lock (PostgreSQL's pg_stat_activity, never by timing), then the seed goes on. PostgreSQL
only: SQLite's one write lock serialises the two. The outcome must be one the two, run one after
the other, would have given, with no deadlock (one of the two aborted by PostgreSQL)."""

import json
import threading

import pytest
from sqlalchemy import select

from actions import OAuthActions
from conftest import ALICE_PASSWORD
from identity.extensions import db
from identity.models import RefreshToken, User
from identity.services import seed
from identity.services.passwords import verify_password
from races import in_own_context, in_thread, wait_until
from test_elsewhere_review import live_families
from test_redemption_review import _waiting, phone_and_its_worker

NEW_ADDRESS = "alice.moved@example.org"
NEW_PASSWORD = "cobalt-meadow-lantern-8135"


def _seed_doc(ending: str) -> dict:
    alice = {"username": "alice", "email": NEW_ADDRESS, "name": "Alice Example",
             "password": NEW_PASSWORD if ending == "reset" else ALICE_PASSWORD}
    if ending == "disable":
        alice["enabled"] = False
    return {"users": [alice]}


def paused_after_its_locks(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The next seed stops right after it took its rows' locks (_lock_in_one_order), once: the
    first event is set when it is there, and it goes on when the test sets the second."""
    locking, there, go = seed._lock_in_one_order, threading.Event(), threading.Event()

    def lock_then_pause(*args, **kwargs):
        locked = locking(*args, **kwargs)
        if not there.is_set():
            there.set()
            assert go.wait(60), "the test never let the seed go on"
        return locked

    monkeypatch.setattr(seed, "_lock_in_one_order", lock_then_pause)
    return there, go


@pytest.mark.parametrize("statement", ["one statement", "a transaction"])
@pytest.mark.parametrize("ending", ["reset", "disable"])
def test_a_seed_that_moves_and_ends_a_user_does_not_deadlock_with_her_codes_redemption(
        app, flow_clients, runner, database_uri, tmp_path, monkeypatch, mail, ending, statement):
    """PostgreSQL: the operator runs `flask seed --reset-passwords users.json` (alice moved to
    another address, with a new password, or disabled) while the phone's app redeems the code
    alice's browser has just minted. The seed locked alice's row FOR UPDATE for the address at
    once; the redemption, holding the code (and her session FOR SHARE), waited at her row to store
    its refresh token; the seed then went to end her codes and waited for that code: a deadlock.
    PostgreSQL aborted one of the two a second later: the app was answered 503 (or the operator's
    seed failed, nothing seeded). Both now end as if one after the other: the redemption first,
    its tokens then revoked by the seed, and the seed's changes committed."""
    path = tmp_path / "users.json"
    path.write_text(json.dumps(_seed_doc(ending)))
    args = ["seed", str(path)] + (["--reset-passwords"] if ending == "reset" else [])
    there, go = paused_after_its_locks(monkeypatch)
    seeding, results = {}, {}
    with phone_and_its_worker(app, database_uri, statement) as (phone, phones_app, form):
        seeder = threading.Thread(target=in_own_context(app, lambda: runner.invoke(args=args), seeding), daemon=True)
        seeder.start()
        try:
            assert there.wait(60), seeding
            redeeming = in_thread(results, "redeemed",
                                  lambda: OAuthActions(phones_app.test_client()).token("mobile-pkce", **form))
            at_the_users_row = "WITH consumed" if statement == "one statement" else "INSERT INTO refresh_tokens"
            wait_until(lambda: not redeeming.is_alive() or _waiting(app, at_the_users_row), timeout=60)
        finally:
            go.set()
            seeder.join(60)
        redeeming.join(60)
        replayed = OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)
    result, redeemed = seeding["done"], results["redeemed"]
    label = "user alice (password reset)" if ending == "reset" else "user alice (disabled)"
    assert (result.exit_code, result.output) == (
        0, f"updated {label}\nSeeded: 0 created, 1 updated, 0 unchanged.\n"), repr(result.exception)
    # the redemption first (it began first, and its KEY SHARE on her row waits for nothing the seed
    # holds): its tokens issued, then revoked by the seed; her code redeems no more
    assert redeemed.status_code == 200, (redeemed.status_code, redeemed.get_json())
    refreshed = OAuthActions(app.test_client()).token(
        "mobile-pkce", grant_type="refresh_token", refresh_token=redeemed.get_json()["refresh_token"])
    assert (refreshed.status_code, refreshed.get_json()["error"]) == (400, "invalid_grant"), refreshed.get_json()
    assert (replayed.status_code, replayed.get_json()["error"]) == (400, "invalid_grant"), replayed.get_json()
    assert live_families(app) == set()
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert (alice.email, alice.enabled) == (NEW_ADDRESS, ending != "disable")
        assert verify_password(alice.password_hash, NEW_PASSWORD if ending == "reset" else ALICE_PASSWORD)
        assert db.session.scalars(select(RefreshToken.revoked_at).where(
            RefreshToken.client_id == "mobile-pkce", RefreshToken.revoked_at.is_(None))).all() == []
        db.session.rollback()
