"""Review from outside: every state-changing request sent twice at once (a double click, a
retried request, an operator's command run from two terminals), on SQLite and PostgreSQL."""

import os

import pytest

from twice_review_support import cli, cli_twice, migrated_env, operator_env, scalar

pytestmark = pytest.mark.server

# each try migrates and seeds a database and starts four to six CLI processes: once a run (the CI
# runs it on SQLite and on PostgreSQL); IDENTITY_TEST_TWICE_ATTEMPTS=N tries N times, to hunt a race
ATTEMPTS = int(os.environ.get("IDENTITY_TEST_TWICE_ATTEMPTS", "1"))


@pytest.fixture
def env(tmp_path):
    return operator_env(tmp_path)


def _audited(env, event: str) -> int:
    return scalar(env, "SELECT count(*) FROM audit_events WHERE event = :event", event=event)


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
@pytest.mark.parametrize("group, name", [("users", "alice"), ("clients", "spa")])
def test_disable_twice_at_once_disables_once(env, group, name, attempt):
    """`users disable` (`clients disable`) run twice at once: one disables (one audit event) and
    the other says it was already disabled; then `enable` the same way."""
    kind = group[:-1]
    for command in ("disable", "enable"):
        event, done, already = f"{kind}_{command}d", f"is now {command}d", f"already {command}d"
        before = _audited(env, event)
        results = cli_twice([group, command, name], env)
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        said = sorted("done" if done in r.stdout else "already" if already in r.stdout else r.stdout for r in results)
        assert said == ["already", "done"], f"{group} {command} twice at once answered {said}"
        assert _audited(env, event) - before == 1, f"{group} {command} twice at once audited {event} {_audited(env, event) - before} times"


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
@pytest.mark.parametrize("command, name, event", [(["clients", "remove"], "spa", "client_removed"),
                                                  (["users", "remove"], "alice", "user_removed")],
                         ids=["clients_remove", "users_remove"])
def test_remove_twice_at_once_removes_once(env, command, name, event, attempt):
    """`clients remove` / `users remove` run twice at once: one removes (one audit event), the
    other is told there is no such client or user (exit code 1), as when run after it."""
    results = cli_twice([*command, name], env)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], f"{' '.join(command)} twice at once exited {codes}: {[r.stdout + r.stderr for r in results]}"
    refused = next(r for r in results if r.returncode)
    assert f"Error: no {command[0][:-1]} {name!r}" in refused.stderr, refused.stderr
    assert _audited(env, event) == 1


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_users_add_twice_at_once_says_already_exists(env, attempt):
    """`users add` run twice at once (a script retried): one adds the user, the other says the
    user exists, as when run after it; not a database error."""
    created = _audited(env, "user_created")
    results = cli_twice(["users", "add", f"bob{attempt}", "--email", f"bob{attempt}@example.com"], env,
                        input="a-long-new-passphrase-here\n")
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], [r.stdout + r.stderr for r in results]
    refused = next(r for r in results if r.returncode)
    assert refused.stderr.strip() == f"Error: user 'bob{attempt}' already exists", refused.stderr
    assert scalar(env, "SELECT count(*) FROM users WHERE username = :name", name=f"bob{attempt}") == 1
    assert _audited(env, "user_created") - created == 1


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_scopes_remove_twice_at_once_removes_once(env, attempt):
    """`scopes remove` run twice at once: one removes the scope (one audit event), the other is
    told there is no such scope, as when run after it."""
    name = f"reports{attempt}"
    assert cli(["scopes", "add", name], env).returncode == 0
    removed = _audited(env, "scope_removed")
    results = cli_twice(["scopes", "remove", name], env)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], f"scopes remove twice at once exited {codes}: {[r.stdout + r.stderr for r in results]}"
    refused = next(r for r in results if r.returncode)
    assert refused.stderr.strip() == f"Error: no API scope {name!r}", refused.stderr
    assert _audited(env, "scope_removed") - removed == 1


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_first_commands_on_a_new_database_at_once_both_work(tmp_path, attempt):
    """Two operator commands at once on a newly migrated database (a provisioning script adding
    two clients in parallel): both add the standard scopes if missing, and neither fails on the other's."""
    from servers import run_together

    env = migrated_env(tmp_path)
    if env["FLASK_SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):  # _empty added them; a new database has none
        scalar(env, "DELETE FROM identity_resources RETURNING 1")
    assert scalar(env, "SELECT count(*) FROM identity_resources") == 0
    results = run_together(*(lambda name=name: cli(["clients", "add", name, "--grant-type", "client_credentials",
                                                    "--scope", "IdentityServerApi"], env) for name in ("reports", "billing")))
    assert [r.returncode for r in results] == [0, 0], [r.stderr.strip() for r in results if r.returncode]
    assert scalar(env, "SELECT count(*) FROM clients") == 2
