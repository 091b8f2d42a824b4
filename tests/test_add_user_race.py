"""`users add` against another command adding the same user: the answer is "already exists"
whichever of the user's names the other command's commit was seen by."""

import pytest
from sqlalchemy import func, select

from races import amid_the_first
from statements import statements

from identity.errors import Conflict
from identity.extensions import db
from identity.models import User
from identity.services import accounts

PASSWORD = "a-long-new-passphrase-here"


def test_a_user_committed_between_the_name_and_address_checks_already_exists(app, seeded):
    """Two `users add dora --email dora@...` at once (a retried script; tests/test_twice_review.py).
    The checks read the user name and the address in two statements; on PostgreSQL each sees
    what had committed when it began, so the other command's commit, landing between them, was
    seen by the address's read alone, and the command said "email: This email address is taken."
    instead of "user 'dora' already exists", the answer when run after the other."""
    with app.app_context():
        added: list = []

        def the_other_command():
            with app.app_context():
                try:
                    accounts.create_user("dora", PASSWORD, email="dora@example.com")
                    added.append(True)
                finally:
                    db.session.remove()

        with amid_the_first("FROM users", the_other_command), pytest.raises(Conflict) as refused:
            accounts.create_user("dora", PASSWORD, email="dora@example.com")
        db.session.rollback()
        assert added == [True]
        assert str(refused.value) == "user 'dora' already exists"
        assert db.session.scalar(select(func.count()).select_from(User).where(User.username == "dora")) == 1


def test_a_user_name_and_address_too_long_to_be_anyones_are_not_looked_up(app):
    """check_new_user reads the taken logins in one statement (above); one past its column's
    length is refused for its length, and was sent to the database whole for nothing."""
    with statements(app) as log, app.app_context():
        errors = accounts.check_new_user("b" * 100_000, "b" * 100_000 + "@example.org", "orchid-lantern-basalt-7312")
    assert "at most 150" in errors["username"][0] and "at most 320" in errors["email"][0]
    assert [s for s in log.pooled if "FROM users" in s] == []
