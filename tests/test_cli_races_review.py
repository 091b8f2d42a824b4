"""Review: the operator's front door (the `flask` CLI) against concurrent changes. Operators run
the commands while the servers serve and while other operators run theirs; a command that reads
a row, then writes it (after a hash, a check, a prompt) without holding the row's lock meets
another's commit in between. Every such meeting must end as the two, run one after the other in
some order, would have ended: a clear line and an exit code, never a traceback, and no change
half written. Each test makes the other command commit at a chosen point, by a hook on a service
call, a statement or a commit (tests/races.py's way), never by timing, and runs the commands
in-process on the real database."""

import json
import threading
from contextlib import contextmanager

from sqlalchemy import event, select

from identity.extensions import db
from identity.models import AuditEvent, Client, User
from identity.services import accounts, clients, seed
from identity.services.passwords import verify_password
from races import amid_the_first_unless_queued, in_own_context, lock_waiters, wait_until

DEMO_PASSWORD = "tulip-quartz-harbor-917"


def audited(*names: str) -> list[str]:
    """These audit events as recorded, oldest first."""
    return list(db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)))


def seed_file(tmp_path, doc: dict) -> str:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(doc))
    return str(path)


def meanwhile_unless_queued(app, call, results: dict) -> threading.Thread:
    """From a hook in this thread's transaction: `call` runs in another thread, in an app context
    of its own (its result or exception in results["done"]), to its end, or only until it waits
    for a lock this transaction holds (PostgreSQL: lock_waiters). On SQLite a transaction that has
    written holds the database's one write lock, so `call` then commits nothing before this one
    ends, and is only started. The caller joins the thread returned."""
    other = threading.Thread(target=in_own_context(app, call, results), daemon=True)
    other.start()
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        if not connection.connection.dbapi_connection.in_transaction:  # nothing of ours holds it back
            other.join(60)
    else:
        wait_until(lambda: not other.is_alive() or lock_waiters(app) > 0, timeout=60)
    return other


@contextmanager
def right_after_the_next_commit(app, call, results: dict):
    """Within: right after the next commit of this thread's session, `call` runs in another
    thread, in an app context of its own, to its end (this session holds no lock then); its
    result or exception in results["done"]."""
    def after_commit(session):
        if "started" not in results and session is db.session():
            results["started"] = True
            other = threading.Thread(target=in_own_context(app, call, results))
            other.start()
            other.join(60)

    event.listen(db.session, "after_commit", after_commit)
    try:
        yield
    finally:
        event.remove(db.session, "after_commit", after_commit)


def after_the_seeds_hashes(monkeypatch, app, name: str, call, results: dict) -> list:
    """Hook `seed.<name>` (a read of a row the seed writes): its first call once the seed's hashes
    are made (the read of the row to write, not the hashes' own) runs `call` meanwhile_unless_queued,
    once. The list returned holds the thread."""
    hashing, reading, threads, armed = seed._hashes_first, getattr(seed, name), [], []

    def hashes(*args, **kwargs):
        made = hashing(*args, **kwargs)
        armed.append(True)
        return made

    def read(*args, **kwargs):
        found = reading(*args, **kwargs)
        if armed and not threads:
            threads.append(meanwhile_unless_queued(app, call, results))
        return found

    monkeypatch.setattr(seed, "_hashes_first", hashes)
    monkeypatch.setattr(seed, name, read)
    return threads


def test_a_seed_that_updates_a_user_removed_meanwhile_ends_without_a_traceback(app, runner, seeded, tmp_path,
                                                                              monkeypatch):
    """`flask seed users.json` (alice's name changed in it) while another operator's `users remove
    alice` runs. The seed found alice, then wrote the file's fields to the object it had found,
    with no lock on her row: the removal, committed between the two, left no row, and the seed
    ended in SQLAlchemy's traceback (an UPDATE that matched no row), nothing seeded, instead of an
    answer the two, one after the other, give: alice created anew from the file (the removal
    first), or updated and then removed."""
    doc = {"users": [{"username": "alice", "email": "alice@example.com", "password": DEMO_PASSWORD,
                      "name": "Alice Renamed"}]}
    removed: dict = {}
    threads = after_the_seeds_hashes(monkeypatch, app, "find_user", lambda: accounts.remove_user("alice"), removed)
    with app.app_context():
        result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
        for thread in threads:
            thread.join(60)
        assert threads and "done" in removed and removed["done"] is None, removed
        name = db.session.scalar(select(User.name).where(User.username == "alice"))
        # the removal first, then the seed; or the seed first, then the removal
        assert (result.exit_code, result.output, name) in (
            (0, "created user alice\nSeeded: 1 created, 0 updated, 0 unchanged.\n", "Alice Renamed"),
            (0, "updated user alice\nSeeded: 0 created, 1 updated, 0 unchanged.\n", None)), repr(result.exception)
        assert audited("seeded", "user_removed") == (
            ["seeded", "user_removed", "seeded"] if name else ["seeded", "seeded", "user_removed"])


def test_a_seed_that_meets_a_user_removed_after_its_hashes_hashes_her_password_before_its_locks(
        app, runner, seeded, tmp_path, monkeypatch):
    """`flask seed users.json` listing alice while another operator's `users remove alice` commits
    after the seed made its hashes (none for alice, who existed) and before it took her row. The
    seed created her anew and hashed her password there, with its locks held: on SQLite the
    database's one write lock, which every serving worker's write waited out for the hash. Now
    the seed starts again from its hashing step."""
    doc = {"users": [{"username": "alice", "email": "alice@example.com", "password": DEMO_PASSWORD,
                      "name": "Alice Renamed"}]}
    removed: dict = {}
    threads = after_the_seeds_hashes(monkeypatch, app, "find_user", lambda: accounts.remove_user("alice"), removed)
    locking, locked, hashed_when_locked = seed._lock_in_one_order, [False], []
    hashing_first, hash_password = seed._hashes_first, accounts.hash_password

    def hashes(*args, **kwargs):  # (after after_the_seeds_hashes' own hook, which it calls)
        locked[0] = False
        return hashing_first(*args, **kwargs)

    def lock(*args, **kwargs):
        locked[0] = True
        return locking(*args, **kwargs)

    def hash_noting_the_locks(*args, **kwargs):
        hashed_when_locked.append(locked[0])
        return hash_password(*args, **kwargs)

    monkeypatch.setattr(seed, "_hashes_first", hashes)
    monkeypatch.setattr(seed, "_lock_in_one_order", lock)
    monkeypatch.setattr(accounts, "hash_password", hash_noting_the_locks)
    with app.app_context():
        result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
        for thread in threads:
            thread.join(60)
        assert threads and removed.get("done", "not run") is None, removed
        user = db.session.scalar(select(User).where(User.username == "alice"))
        if user is not None:  # the removal first, then the seed: she is made anew, hashed before the locks
            assert (result.exit_code, result.output) == (
                0, "created user alice\nSeeded: 1 created, 0 updated, 0 unchanged.\n"), repr(result.exception)
            assert True not in hashed_when_locked, hashed_when_locked
            assert user.name == "Alice Renamed" and verify_password(user.password_hash, DEMO_PASSWORD)
        else:  # the seed first (the removal queued behind its lock), then the removal
            assert (result.exit_code, result.output) == (
                0, "updated user alice\nSeeded: 0 created, 1 updated, 0 unchanged.\n"), repr(result.exception)


def test_a_seed_that_updates_a_client_removed_meanwhile_ends_without_a_traceback(app, runner, seeded, tmp_path,
                                                                                monkeypatch):
    """`flask seed clients.json` (spa's name changed in it) while another operator's `clients
    remove spa` runs. The seed read spa, then wrote the file's fields to the object it had read,
    with no lock on its row (`clients update`, `disable`, `enable` and `remove` take it first): the
    removal, committed between the two, left no row, and the seed ended in SQLAlchemy's traceback
    (an UPDATE that matched no row), nothing seeded, instead of an answer the two, one after the
    other, give: spa registered anew (the removal first), or updated and then removed."""
    spa = next(c for c in seeded["clients"] if c["client_id"] == "spa")
    doc = {"clients": [{**spa, "client_name": "Single page, renamed"}]}
    removed: dict = {}
    writing, threads = seed.apply_client_data, []

    def removed_before_the_write(*args, **kwargs):  # the file's fields onto the client the seed read
        if not threads:
            threads.append(meanwhile_unless_queued(app, lambda: clients.remove_client("spa"), removed))
        return writing(*args, **kwargs)

    monkeypatch.setattr(seed, "apply_client_data", removed_before_the_write)
    with app.app_context():
        result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
        for thread in threads:
            thread.join(60)
        assert threads and "done" in removed and removed["done"] is None, removed
        name = db.session.scalar(select(Client.client_name).where(Client.client_id == "spa"))
        # the removal first, then the seed; or the seed first, then the removal
        assert (result.exit_code, result.output, name) in (
            (0, "created client spa\nSeeded: 1 created, 0 updated, 0 unchanged.\n", "Single page, renamed"),
            (0, "updated client spa\nSeeded: 0 created, 1 updated, 0 unchanged.\n", None)), repr(result.exception)


def test_set_password_judges_the_password_by_the_address_the_user_has_when_it_is_set(app, runner, seeded, mail,
                                                                                     monkeypatch):
    """`users set-password alice` with the passphrase "tidal-orchid-lantern-52", while another
    operator's seed moves alice to the address tidal-orchid-lantern-52@example.org. The command
    judged the password against the address it read before its lock, then hashed and set it: the
    seed, committed between the two, was not seen, and alice was given a password that is her own
    address's name, which the policy refuses (as it does when the command runs after the seed)."""
    chosen = "tidal-orchid-lantern-52"
    doc = {"users": [{"username": "alice", "email": f"{chosen}@example.org", "password": DEMO_PASSWORD,
                      "name": "Alice Example"}]}
    hashing, moved = accounts.new_password_hash, {}

    def moved_before_the_hash(password):
        if not moved:
            thread = meanwhile_unless_queued(app, lambda: seed.apply_seed(seed.load_seed(json.dumps(doc))).updated,
                                             moved)
            thread.join(60)
        return hashing(password)

    monkeypatch.setattr(accounts, "new_password_hash", moved_before_the_hash)
    with app.app_context():
        result = runner.invoke(args=["users", "set-password", "alice"], input=chosen + "\n")
        assert moved.get("done") == ["user alice"], moved
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert (result.exit_code, result.output) == (
            1, "Error: password: The password must not be your user name or email address.\n"), repr(result.exception)
        assert verify_password(alice.password_hash, DEMO_PASSWORD)
        assert audited("password_set") == []


def test_a_seed_that_updates_an_api_scope_removed_meanwhile_ends_without_a_traceback(app, runner, seeded, tmp_path):
    """`flask seed scopes.json` (the reports scope's display name changed in it) while another
    operator's `scopes remove reports` runs. The seed read the scope, then wrote the file's
    fields to the object it had read, with no lock on its row: the removal, committed between the
    two, left no row, and the seed ended in SQLAlchemy's traceback (an UPDATE that matched no row),
    nothing seeded, instead of an answer the two, one after the other, give: the scope added anew
    (the removal first), or updated and then removed."""
    from identity.models import ApiScope
    from identity.services import resources

    with app.app_context():
        resources.add_api_scope("reports", display_name="Reports")
        doc = {"api_scopes": [{"name": "reports", "display_name": "Reports, renamed"}]}
        removed: dict = {}
        the_removal = in_own_context(app, lambda: resources.remove_api_scope("reports"), removed)
        with amid_the_first_unless_queued(app, "WHERE api_scopes.name =", the_removal) as started:
            result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
        assert started and "done" in removed and removed["done"] is None, removed
        shown = db.session.scalar(select(ApiScope.display_name).where(ApiScope.name == "reports"))
        # the removal first, then the seed; or the seed first, then the removal
        assert (result.exit_code, result.output, shown) in (
            (0, "created api scope reports\nSeeded: 1 created, 0 updated, 0 unchanged.\n", "Reports, renamed"),
            (0, "updated api scope reports\nSeeded: 0 created, 1 updated, 0 unchanged.\n", None)), repr(result.exception)


def test_a_seed_whose_address_another_user_took_meanwhile_says_so(app, runner, seeded, tmp_path, monkeypatch):
    """`flask seed users.json` (alice moved to shared@example.com in it) while another operator's
    `users add carol --email shared@example.com` commits, after the seed checked the file against
    the database. The seed's write met the address's unique key; the command redid the seed once,
    against the check it had made before, and ended in "database error: " and the database's
    own words about a unique constraint, instead of the answer it gives when run after the add:
    the address belongs to another user."""
    doc = {"users": [{"username": "alice", "email": "shared@example.com", "password": DEMO_PASSWORD,
                      "name": "Alice Example"}]}
    hashing, added = seed._hashes_first, {}

    def added_before_the_hashes(*args, **kwargs):
        if not added:
            meanwhile_unless_queued(app, lambda: accounts.create_user(
                "carol", "marble-violet-canyon-482", email="shared@example.com").username, added).join(60)
        return hashing(*args, **kwargs)

    monkeypatch.setattr(seed, "_hashes_first", added_before_the_hashes)
    with app.app_context():
        result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
        assert added.get("done") == "carol", added
        address = db.session.scalar(select(User.email).where(User.username == "alice"))
        assert (result.exit_code, result.output, address) == (
            1, "Error: user 'alice': email: belongs to another user\n", "alice@example.com"), repr(result.exception)


def test_clients_add_on_a_client_removed_right_after_its_commit_says_it_was_added(app, runner, seeded):
    """`clients add reports-job --grant-type client_credentials` while another operator's (or a
    cleanup script's) `clients remove reports-job` runs, the removal committed right after the
    add's own commit. The command then read the client's id for its line from the row, found
    none, and ended in SQLAlchemy's traceback (ObjectDeletedError) after the client was added:
    the generated secret, shown only then, was never shown. The two, one after the other, added
    and then removed it: the command says it added it, and shows its secret."""
    with app.app_context():
        removed: dict = {}
        with right_after_the_next_commit(app, lambda: clients.remove_client("reports-job"), removed):
            result = runner.invoke(args=["clients", "add", "reports-job", "--grant-type", "client_credentials",
                                         "--scope", "IdentityServerApi"])
        assert "done" in removed and removed["done"] is None, removed
        assert (result.exit_code, result.output.splitlines()[:1]) == (0, ["Added client reports-job."]), \
            repr(result.exception)
        assert result.output.splitlines()[1].startswith("Client secret (shown only now, store it safely): ")
        assert audited("client_added", "client_removed") == ["client_added", "client_removed"]
