"""Threads of one worker process sharing its per-process state (granian's blocking threads, the
mail sender, the logout deliverer): lock-order cycles between a request's transaction and a
per-process lock, caches filled by two threads, per-request values seen by another thread."""

import os
import threading

import pytest
from sqlalchemy import func, select

from races import amid_the_first

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


_CACHED_BEARER = {"BEARER_CACHE_SECONDS": 5}  # the longest allowed: no test step lasts it


def _revoke_in_another_thread(app, jti: str, *, commit: bool = True):
    """A revocation (RFC 7009, a replayed code) on another thread of the worker; committed unless
    `commit` is False, when the thread is returned waiting for `go` to commit."""
    from identity.services import tokens

    go, done = threading.Event(), threading.Event()

    def revoke():
        with app.app_context():
            try:
                tokens.revoke_access_token(jti, 2**31 - 1, None)
                done.set()
                if not commit:
                    go.wait(30)
                db.session.commit()
            finally:
                db.session.remove()
                done.set()

    thread = threading.Thread(target=revoke)
    thread.start()
    if commit:
        thread.join(60)
        assert not thread.is_alive()
    else:
        done.wait(30)
    return thread, go


@pytest.mark.parametrize("app_config", [_CACHED_BEARER])
def test_a_bearer_check_read_before_a_revocation_is_not_remembered_after_it(app, seeded):
    """A bearer check on one thread read the token's row (not yet revoked); meanwhile a revocation
    on another thread of the worker committed and forgot the worker's answer for the jti; then the
    check stored its answer. The worker accepted the revoked token for BEARER_CACHE_SECONDS, where
    bearer_cache.py promises that the worker committing a revocation refuses it at once."""
    from identity.services import bearer_cache
    from identity.store import tokens as token_rows

    with app.app_context():
        sub = db.session.scalar(select(User.subject).where(User.username == "alice"))
        db.session.commit()
        jti = "threads-review-jti-1"
        assert bearer_cache.live_row(sub, jti, token_rows.live_token_user) is not None  # first sighting

        def read_then_revoked(sub, jti):
            row = token_rows.live_token_user(sub, jti)  # the answer, read before the revocation
            _revoke_in_another_thread(app, jti)  # committed, the worker's answers forgotten
            return row

        assert bearer_cache.live_row(sub, jti, read_then_revoked) is not None  # its answer then
        assert token_rows.is_revoked(jti)
        after = bearer_cache.live_row(sub, jti, token_rows.live_token_user)
        assert after is None, "the revoked token's bearer check after the revocation committed: accepted"


@pytest.mark.skipif(not _ON_POSTGRESQL, reason="on SQLite the check's lease waits for the revocation's commit")
@pytest.mark.parametrize("app_config", [_CACHED_BEARER])
def test_a_bearer_check_between_a_revocation_and_its_commit_is_not_remembered_after_it(app, seeded):
    """The revocation forgot the worker's answers before it committed: a check on another thread
    in between read the token as live (rightly, then) and remembered it, and after the commit the
    worker accepted the revoked token for BEARER_CACHE_SECONDS."""
    from identity.services import bearer_cache
    from identity.store import tokens as token_rows

    with app.app_context():
        sub = db.session.scalar(select(User.subject).where(User.username == "alice"))
        db.session.commit()
        jti = "threads-review-jti-2"
        assert bearer_cache.live_row(sub, jti, token_rows.live_token_user) is not None  # first sighting
        revoker, go = _revoke_in_another_thread(app, jti, commit=False)  # forgotten, not yet committed
        assert bearer_cache.live_row(sub, jti, token_rows.live_token_user) is not None  # not revoked yet
        go.set()
        revoker.join(60)
        assert not revoker.is_alive()
        assert token_rows.is_revoked(jti)
        after = bearer_cache.live_row(sub, jti, token_rows.live_token_user)
        assert after is None, "the revoked token's bearer check after the revocation committed: accepted"


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS_CACHE_SECONDS": 60}])
def test_cors_origins_read_before_a_change_do_not_replace_those_read_after_it(app, seeded):
    """Two threads of a worker refill its CORS origins at once. One's read began before a client was
    disabled (its origins with it); the other read after the commit and stored the new set. The
    first then stored its older set over it, stamped with the time it finished: the disabled
    client's origin got CORS answers for a whole period more (docs/cli.md: within
    CORS_ORIGINS_CACHE_SECONDS of the change)."""
    from sqlalchemy import update

    from identity.models import Client
    from identity.services import clients

    with app.app_context():
        owner, origins = next((c.client_id, c.allowed_cors_origins) for c in db.session.scalars(select(Client))
                              if c.allowed_cors_origins)
        origin = origins[0].rstrip("/")
        db.session.commit()
        fresh: list = []

        def disable_then_read():
            with app.app_context():
                try:
                    db.session.execute(update(Client).where(Client.client_id == owner).values(enabled=False))
                    db.session.commit()
                    fresh.append(set(clients.cors_origins()))
                finally:
                    db.session.remove()

        with amid_the_first("allowed_cors_origins", disable_then_read):
            older = clients.cors_origins()  # its read began before the change committed
        assert origin in older and fresh and origin not in fresh[0]
        assert origin not in clients.cors_origins(), "a disabled client's origin, after a set read since the change was kept"


@pytest.mark.parametrize("app_config", [{"DISCOVERY_DOCUMENT_CACHE_SECONDS": 60}])
def test_a_discovery_document_built_before_a_change_does_not_replace_one_built_after_it(app, seeded):
    """The same race for the discovery document (docs/configuration.md: new scopes appear within
    DISCOVERY_DOCUMENT_CACHE_SECONDS): a build whose scope read began before an API scope was added
    stored its document over the one another thread built since, for a whole period more."""

    from identity.services import resources
    from identity.web import discovery

    base = "https://localhost"
    with app.test_request_context("/.well-known/openid-configuration", base_url=base):
        db.session.commit()
        fresh: list = []

        def add_then_build():
            with app.test_request_context("/.well-known/openid-configuration", base_url=base):
                try:
                    resources.add_api_scope("threads.review")
                    db.session.commit()
                    fresh.append(discovery._cached_document(base)[0])
                finally:
                    db.session.remove()

        with amid_the_first("api_scopes", add_then_build):
            older = discovery._cached_document(base)[0]  # its scope read began before the scope was added
        assert b'"threads.review"' not in older and fresh and b'"threads.review"' in fresh[0]
        assert b'"threads.review"' in discovery._cached_document(base)[0], \
            "the document built before the scope was added replaced the one built since"
