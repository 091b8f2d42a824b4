"""Review: signing in again in a browser (its live session's public id handed over to the new
session, store.hand_over_public_sid) against `flask users disable` of the same user, which ends
all her sessions in one UPDATE. The hand-over is held right after it ended the old session (its
transaction open) while the disable runs until it is done or waits at a lock (PostgreSQL's
pg_locks, never by timing). PostgreSQL only: SQLite's one write lock serialises the two. Both must
end as if one ran after the other, with no deadlock (one of the two aborted by PostgreSQL)."""

from sqlalchemy import event, text

from actions import AuthActions
from conftest import postgresql_only
from identity.extensions import db
from identity.services import browser_sessions
from races import in_thread, lock_waiters, other_workers, wait_until
from test_logout_review import live_sessions

pytestmark = postgresql_only()

_TOUCH_OLD = text("UPDATE user_sessions SET last_seen_at = last_seen_at + 1 WHERE sid = :digest")


def test_signing_in_again_does_not_deadlock_with_a_disable_that_ends_her_sessions(
        app, client, flow_clients, database_uri, monkeypatch):
    """PostgreSQL: alice signs in again in her browser while the operator disables her. The
    browser's other tab touched her old session after the new one was stored, so the disable's
    UPDATE of her sessions met the new one's row first. The hand-over held the old session's row
    and waited for the new one's; the disable held the new one's and waited for the old one's: a
    deadlock, one of the two aborted by PostgreSQL. Now the hand-over takes her row first, as
    every change that ends her sessions does: it waits for the disable, or the disable for it."""
    assert AuthActions(client).login().status_code == 302
    handing_over, disabled = browser_sessions.store.hand_over_public_sid, {}
    with other_workers(database_uri) as (other,):
        def disable_until_queued(conn, cursor):
            disabled["thread"] = in_thread(disabled, "result",
                                           lambda: other.test_cli_runner().invoke(args=["users", "disable", "alice"]))
            wait_until(lambda: not disabled["thread"].is_alive() or lock_waiters(app) > 0, timeout=60)

        def handed_over_amid_a_disable(old_sid, *args):
            with db.engine.begin() as connection:  # the other tab's request, committed
                connection.execute(_TOUCH_OLD, {"digest": browser_sessions.store.sid_digest(old_sid)})
            engine, called = db.engine, []

            def after(conn, cursor, statement, parameters, context, executemany):
                if not called and "UPDATE user_sessions SET public_sid" in statement:
                    called.append(1)
                    disable_until_queued(conn, cursor)

            event.listen(engine, "after_cursor_execute", after)
            try:
                return handing_over(old_sid, *args)
            finally:
                event.remove(engine, "after_cursor_execute", after)

        monkeypatch.setattr(browser_sessions.store, "hand_over_public_sid", handed_over_amid_a_disable)
        again = AuthActions(client).login()
        disabled["thread"].join(60)
    result = disabled["result"]
    assert again.status_code == 302, again.status_code
    assert (result.exit_code, result.output.splitlines()[0]) == (
        0, "User alice is now disabled; their sessions and tokens were revoked."), result.output
    assert live_sessions(app, "alice") == 0
