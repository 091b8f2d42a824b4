"""The reservation behind lockout (services/lockout.py), one attempt at a time: each attempt is
counted before its hash, a success settles its own reservation, and the limit-th reservation
locks. The races themselves are in test_lockout_races.py."""

import pytest
from sqlalchemy import select

from identity.errors import AccountLocked, ValidationFailed
from identity.extensions import db
from identity.models import User
from identity.services import accounts, lockout
from identity.store.writes import write
from test_localapi_support import ALICE_PASSWORD, CHEAP_ARGON2

LIMIT = 3


@pytest.fixture
def app_config():
    return {**CHEAP_ARGON2, "LOCKOUT_MAX_FAILURES": LIMIT, "LOCKOUT_SECONDS": 300}


def counters(app) -> tuple[int, int]:
    with app.app_context():
        row = db.session.execute(select(User.failed_attempts, User.locked_until).where(User.username == "alice")).one()
        db.session.remove()
    return tuple(row)


def alice_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == "alice"))


def test_a_reservation_counts_the_attempt_before_any_password_is_checked(app, seeded):
    with app.test_request_context():
        first = lockout.reserve(alice_id(app))
        assert (first.place, first.locked) == (1, False)
        assert counters(app) == (1, 0)
        assert lockout.reserve(alice_id(app)).place == 2
        last = lockout.reserve(alice_id(app))
        assert last.place == LIMIT and last.locked
        assert counters(app) == (0, last.lock)
        assert lockout.reserve(alice_id(app)) is None  # locked: refused, nothing counted
        assert counters(app) == (0, last.lock)


def test_a_success_keeps_the_reservations_made_after_its_own(app, seeded):
    with app.test_request_context():
        mine = lockout.reserve(alice_id(app))
        lockout.reserve(alice_id(app))  # another attempt, still being checked
        write(lockout.settled(mine))
    assert counters(app) == (1, 0)


def test_the_right_password_at_the_last_place_lifts_its_own_lock(app, seeded):
    with app.test_request_context():
        for _ in range(LIMIT - 1):
            assert accounts.authenticate("alice", "wrong-password-123").user is None
        assert accounts.authenticate("alice", ALICE_PASSWORD).user is not None
    assert counters(app) == (0, 0)


def test_a_lock_set_by_a_later_reservation_stays_after_an_earlier_success(app, seeded):
    with app.test_request_context():
        mine = lockout.reserve(alice_id(app))
        others = [lockout.reserve(alice_id(app)) for _ in range(LIMIT - 1)]
        assert others[-1].locked
        write(lockout.settled(mine))
    assert counters(app) == (0, others[-1].lock)


def test_a_right_current_password_with_a_rejected_new_one_leaves_the_count_as_it_was(app, seeded):
    """Its reservation is the last one allowed, so it locked; it takes back that lock and itself."""
    with app.test_request_context():
        for _ in range(LIMIT - 1):
            with pytest.raises(ValidationFailed):
                accounts.change_password(alice_id(app), "wrong-password-123", "x", "x")
        assert counters(app) == (LIMIT - 1, 0)
        with pytest.raises(ValidationFailed) as rejected:
            accounts.change_password(alice_id(app), ALICE_PASSWORD, "short", "short")
        assert "new_password" in rejected.value.errors
        assert counters(app) == (LIMIT - 1, 0)
        write(lockout.settled(lockout.reserve(alice_id(app))))  # a success: the count starts again
        assert counters(app) == (0, 0)
        mine = lockout.reserve(alice_id(app))
        lockout.reserve(alice_id(app))
        write(lockout.released(mine))
    assert counters(app) == (1, 0)  # the other reservation stays


def test_wrong_current_passwords_lock_and_then_even_the_right_one_is_refused(app, seeded):
    with app.test_request_context():
        for _ in range(LIMIT - 1):
            with pytest.raises(ValidationFailed):
                accounts.change_password(alice_id(app), "wrong-password-123", "x", "x")
        with pytest.raises(AccountLocked):
            accounts.change_password(alice_id(app), "wrong-password-123", "x", "x")
        with pytest.raises(AccountLocked):
            accounts.change_password(alice_id(app), ALICE_PASSWORD, "lantern-orchid-velvet-204",
                                     "lantern-orchid-velvet-204")
    assert counters(app)[1] > 0
