"""Threads of one worker process sharing its per-process state (granian's blocking threads, the
mail sender, the logout deliverer): lock-order cycles between a request's transaction and a
per-process lock, caches filled by two threads, per-request values seen by another thread."""

import os
import threading

import pytest
from sqlalchemy import func, select

from identity.extensions import db
from identity.models import SigningKey, User

_ON_POSTGRESQL = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "").startswith("postgresql")
sqlite_only = pytest.mark.skipif(_ON_POSTGRESQL, reason="SQLite's one write lock")


@sqlite_only
@pytest.mark.parametrize("app_config", [{"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 2}}}])
def test_a_request_holding_the_write_lock_signs_while_another_thread_makes_the_first_key(app, seeded):
    """Two threads of one worker. One loads the worker's key ring (holding its lock) and, the first
    key being due, writes it on a connection of its own: it waits for SQLite's write lock. The
    other is a request whose transaction holds that lock and signs a token: it waited for the
    ring's lock. Both stood still for the busy timeout; then the key's writer failed (a 503)."""
    from identity.services import keys
    from identity.store import accounts as account_rows

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SigningKey)) == 0
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.commit()
        account_rows.lock_user_row(user_id)  # the request's transaction holds the write lock
        ring = keys._ring()
        outcome: list = []

        def sign_from_another_thread():
            with app.app_context():
                try:
                    outcome.append(keys.signing_key("RS256").kid)
                except Exception as err:  # the outcome the test reports
                    outcome.append(f"{type(err).__name__}: {err}"[:120])
                finally:
                    db.session.remove()

        other = threading.Thread(target=sign_from_another_thread)
        other.start()
        while not ring.lock.locked() and other.is_alive():  # the other thread loads the ring
            pass
        mine = keys.signing_key("RS256").kid  # the request signs inside its transaction
        db.session.commit()
        other.join(60)
        assert not other.is_alive()
        assert outcome == [mine], f"the other thread's signing: {outcome}"
        assert db.session.scalar(select(func.count()).select_from(SigningKey).where(SigningKey.alg == "RS256")) == 1
