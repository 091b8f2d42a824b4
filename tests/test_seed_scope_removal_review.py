"""Review: a seed with `--reset-passwords` (the service's call) against `flask scopes remove` of
an API scope that two of the file's users' grants (of a client that allowed it once) still carry.
The seed ends the users' codes one user after the other; the removal takes the scope out of every
code in the order it finds them. The seed is held right after it ended the first user's codes
(its transaction open) while the removal runs until it is done or waits at a lock (PostgreSQL's
pg_locks, never by timing), then goes on. PostgreSQL only, as
tests/test_seed_client_removal_review.py. Both must end as if one ran after the other, with no
deadlock (one of the two aborted by PostgreSQL)."""

import pytest
from sqlalchemy import select, update

from conftest import postgresql_only
from identity.clock import now
from identity.extensions import db
from identity.models import ApiScope, AuthorizationCode, RefreshToken, User
from identity.services.passwords import verify_password
from test_seed_client_removal_review import (GRANTS, NEW_PASSWORDS, _grants_of_native_held_by_bob_then_alice,
                                             seed_resetting_both_amid)

pytestmark = postgresql_only()


def _grants_carrying_orders(app, runner, grant: str) -> None:
    """The API scope `orders`, and a grant of `native` carrying it for bob, then for alice: left
    from when `native` allowed it (`scopes remove` refuses while a client does)."""
    assert runner.invoke(args=["scopes", "add", "orders"]).exit_code == 0
    _grants_of_native_held_by_bob_then_alice(app, grant)
    with app.app_context():
        for model in (AuthorizationCode, RefreshToken):
            db.session.execute(update(model).values(scope=model.scope + " orders"))
        db.session.commit()


@pytest.mark.parametrize("grant", GRANTS)
def test_a_seed_that_resets_two_users_does_not_deadlock_with_the_removal_of_a_scope_they_were_granted(
        app, flow_clients, runner, database_uri, grant):
    """PostgreSQL: the operator seeds new passwords for alice and bob (`--reset-passwords`) while
    another operator removes the API scope `orders`, which a code (or a refresh token) of each
    still carries. The seed ended alice's and went on to bob's; the removal had taken the scope
    out of bob's and waited for alice's: a deadlock, and PostgreSQL aborted one of the two (its
    command failed, nothing of it written). Now the seed takes the rows of the API scopes of the
    grants it ends before any user's, as the removal takes its scope's first: the removal waits
    for the seed, then removes the scope from what the seed left."""
    _grants_carrying_orders(app, runner, grant)
    removed = seed_resetting_both_amid(app, database_uri, grant, ["scopes", "remove", "orders"])
    assert (removed.exit_code, removed.output) == (0, "Removed API scope orders.\n"), removed.output
    with app.app_context():
        assert db.session.scalar(select(ApiScope.name).where(ApiScope.name == "orders")) is None
        # the seed ended them (the removal takes the scope out of the open ones only)
        assert db.session.scalars(select(AuthorizationCode.id).where(AuthorizationCode.expires_at >= now())).all() == []
        assert db.session.scalars(select(RefreshToken.id).where(RefreshToken.revoked_at.is_(None))).all() == []
        users = {user.username: user for user in db.session.scalars(select(User))}
        assert all(verify_password(users[name].password_hash, password) for name, password in NEW_PASSWORDS.items())
        db.session.rollback()
