"""`users add` against another command adding the same user: the answer is "already exists"
whichever of the user's names the other command's commit was seen by."""

import pytest
from sqlalchemy import func, select

from races import amid_the_first

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
