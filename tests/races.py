"""Two requests a millisecond apart, made to meet at the same statement on every run.

Each request runs in its own app (`other_workers`: another server worker, with its own
connections, since a worker's autocommit connection runs one statement at a time), in a thread
(`in_thread`); the test waits until one is queued behind a lock (`lock_waiters`, from
PostgreSQL's pg_locks) or has reached a point of its own before letting the other go on.
"""

import threading
import time
from contextlib import contextmanager

import jwt
from sqlalchemy import event, text

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from app import create_app
from conftest import HttpsClient, close_connections, make_config
from identity.extensions import db
from identity.models import RevokedAccessToken

_WAITING = text("SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
                "WHERE NOT granted AND datname = current_database()")


def lock_waiters(app) -> int:
    """PostgreSQL: statements of this database waiting for a lock (other databases' are not counted)."""
    with app.app_context():
        engine = db.engine
    with engine.connect() as connection:
        return connection.scalar(_WAITING)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def other_workers(database_uri, count: int = 1):
    """Apps of other server workers, closed (with their connections) at the end."""
    apps = [create_app(make_config(database_uri)) for _ in range(count)]
    for other in apps:
        other.test_client_class = HttpsClient
    try:
        yield apps
    finally:
        for other in apps:
            close_connections(other)


@contextmanager
def _at_the_first(statement_part: str, at_it):
    """Within: `at_it(conn, cursor)` is called once, right after the first statement that names
    `statement_part` has run on the app's engine. Needs an app context."""
    called: list = []

    def after(conn, cursor, statement, parameters, context, executemany):
        if not called and statement_part in statement:
            called.append(1)
            at_it(conn, cursor)

    engine = db.engine
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield called
    finally:
        event.remove(engine, "after_cursor_execute", after)


@contextmanager
def amid_the_first(statement_part: str, run):
    """Within: right after the first statement that names `statement_part` has run on the app's
    engine (its transaction still open), `run` runs in another thread, to its end; the statements
    it makes itself pass. Needs an app context. Yields a list that holds 1 once `run` ran."""
    def run_to_its_end(conn, cursor):
        other = threading.Thread(target=run)
        other.start()
        other.join(60)

    with _at_the_first(statement_part, run_to_its_end) as started:
        yield started


@contextmanager
def amid_the_first_unless_queued(app, statement_part: str, run):
    """amid_the_first, for a `run` that may have to wait for a lock the app's transaction holds by
    then: it runs to its end, or only until it waits for that lock (PostgreSQL: lock_waiters), and
    is joined when the block ends. On SQLite a transaction that has written holds the database's
    one write lock, so `run` commits nothing before it ends: `run` is then only started. Needs an
    app context. Yields a list that holds 1 once `run` started."""
    threads: list = []

    def run_until_queued(conn, cursor):
        other = threading.Thread(target=run, daemon=True)
        other.start()
        threads.append(other)
        if conn.dialect.name == "sqlite":
            if not cursor.connection.in_transaction:  # no write yet: nothing of ours holds `run` back
                other.join(60)
            return
        wait_until(lambda: not other.is_alive() or lock_waiters(app) > 0, timeout=60)

    try:
        with _at_the_first(statement_part, run_until_queued) as started:
            yield started
    finally:
        for other in threads:
            other.join(60)


def in_own_context(app, call, results: dict):
    """A thread's work: `call` in an app context of its own, its result (or exception) in results["done"]."""
    def run():
        with app.app_context():
            try:
                results["done"] = call()
            except Exception as err:  # reported to the test
                results["done"] = err
            finally:
                db.session.remove()
    return run


def in_thread(results: dict, name, call) -> threading.Thread:
    """Run `call` in a started thread; its result (or the exception it raised) goes in results[name]."""
    def run():
        try:
            results[name] = call()
        except BaseException as err:  # reported to the test
            results[name] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def rotated_by_another_worker_during(monkeypatch, hook: str, database_uri, client_id, refresh_token,
                                     module=None) -> dict:
    """While the next revocation calls `module`.`hook` (by default logout's: queueing its logout
    notice), another worker rotates `refresh_token` and commits: the token response it gave, as
    "response"."""
    from identity.services import logout

    module = module or logout
    original, rotated = getattr(module, hook), {}

    def hooked(*args, **kwargs):
        if not rotated:
            with other_workers(database_uri) as (other,):
                rotated["response"] = OAuthActions(other.test_client()).token(
                    client_id, grant_type="refresh_token", refresh_token=refresh_token)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, hook, hooked)
    return rotated


def codes_ended_by_another_worker_during_redemption(monkeypatch, database_uri, username: str = "alice") -> list:
    """While the next code redemption reads its code's user (issued_grants.user_of_grant), another
    worker ends the user's codes, as a password change does, and commits: the list returned is
    not empty once that happened."""
    from sqlalchemy import select

    from identity.models import User
    from identity.services import issued_grants

    original, ended = issued_grants.user_of_grant, []

    def hooked(*args, **kwargs):
        if not ended:
            ended.append(True)
            with other_workers(database_uri) as (worker,), worker.app_context():
                issued_grants.end_user_codes(db.session.scalar(select(User.id).where(User.username == username)))
                db.session.commit()
        return original(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "user_of_grant", hooked)
    return ended


def access_token_refused(app, client, tokens: dict) -> tuple[bool, int]:
    """Whether an access token is on the revocation list, and the user info endpoint's answer to it."""
    jti = jwt.decode(tokens["access_token"], options={"verify_signature": False})["jti"]
    with app.app_context():
        listed = db.session.get(RevokedAccessToken, jti) is not None
        db.session.rollback()
    return listed, client.get("/connect/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}).status_code


MOBILE_REDIRECT = "com.example.app:/callback"


def mobile_code(client, scope: str) -> dict:
    """Signed in as alice (the demo seed): the token request's form for a fresh code of mobile-pkce."""
    assert AuthActions(client).login().status_code == 302
    verifier, challenge = pkce_pair()
    response = OAuthActions(client).authorize(client_id="mobile-pkce", redirect_uri=MOBILE_REDIRECT, scope=scope,
                                              code_challenge=challenge, code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]
    return dict(grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=MOBILE_REDIRECT)


def queued_behind_a_held_token(app, token_id: int, first, second) -> dict:
    """Run `first`, then `second`, each in a thread, queued in that order behind a lock that a
    third connection holds on a refresh token's row, then release it: they meet at that row as
    two requests a millisecond apart would. Their results (or exceptions): "first", "second"."""
    with app.app_context():
        engine = db.engine
    results, threads = {}, []
    with engine.connect() as blocker:
        blocker.execute(text("SELECT id FROM refresh_tokens WHERE id = :id FOR UPDATE"), {"id": token_id})
        for queued, (name, call) in enumerate((("first", first), ("second", second)), start=1):
            threads.append(in_thread(results, name, call))
            wait_until(lambda queued=queued: lock_waiters(app) >= queued)
        blocker.rollback()
    for thread in threads:
        thread.join(30)
    return results
