"""The operator's commands: clients, users, scopes, keys, audit; each on an empty database."""

import json
import logging
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from app import create_app
from identity.services.schema import head_revision
from identity.extensions import db
from identity.models import ApiScope, AuditEvent, Client, SigningKey, User
from identity.services.client_secrets import verify_client_secret
from identity.services.passwords import verify_password

DEMO_SEED = str(Path(__file__).resolve().parent.parent / "demo" / "seed.json")
GOOD_PASSWORD = "violet-anchor-meadow-58"
NEW_PASSWORD = "copper-lantern-orchard-73"


def everything(app) -> str:
    """Every value in every table, as one string to search for leaked plaintext."""
    with app.app_context():
        values = []
        for table in db.metadata.sorted_tables:
            values += [json.dumps(list(row), default=str) for row in db.session.execute(select(table))]
        db.session.remove()
        return "\n".join(values)


def one(app, model, **where):
    with app.app_context():
        row = db.session.scalar(select(model).filter_by(**where))
        db.session.expunge_all()
        return row


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def password_ok(app, user, password) -> bool:
    with app.app_context():
        return verify_password(user.password_hash, password)


def add_user(runner, username="bob", password=GOOD_PASSWORD, *extra):
    return runner.invoke(args=["users", "add", username, *extra], input=password + "\n")


# --- help ----------------------------------------------------------------------------------

COMMANDS = [
    ["seed"], ["clients"], ["clients", "list"], ["clients", "add"], ["clients", "remove"],
    ["users"], ["users", "list"], ["users", "add"], ["users", "remove"], ["users", "set-password"],
    ["scopes"], ["scopes", "list"], ["scopes", "add"], ["scopes", "remove"],
    ["keys"], ["keys", "list"], ["keys", "rotate"], ["audit"], ["audit", "tail"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(runner, command):
    result = runner.invoke(args=[*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    help_text = result.output.split("\n\n", 2)[1].strip()  # the text under the usage line
    assert help_text and not help_text.startswith("Options:"), f"{command} has no help text"


# --- an empty database ---------------------------------------------------------------------

READ_COMMANDS = [["clients", "list"], ["users", "list"], ["scopes", "list"], ["keys", "list"], ["audit", "tail"]]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_read_commands_work_on_an_empty_database(runner, command):
    result = runner.invoke(args=command)

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def fresh_app(tmp_path, **overrides):
    config = {
        "TESTING": True,
        "ENVIRONMENT": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "brand-new.db"),
        "RATELIMIT_ENABLED": False,
        "SIGNING_KEY_RELOAD_SECONDS": 0,
    }
    config.update(overrides)
    return create_app(config)


@pytest.mark.parametrize(
    "command, stdin",
    [(["users", "list"], None), (["clients", "list"], None), (["scopes", "list"], None), (["keys", "list"], None),
     (["audit", "tail"], None), (["seed", DEMO_SEED], None), (["users", "add", "bob"], GOOD_PASSWORD + "\n")],
    ids=lambda v: v[0] + " " + v[1].rsplit("/", 1)[-1] if isinstance(v, list) else "",
)
def test_commands_create_the_schema_on_a_brand_new_database(tmp_path, command, stdin):
    app = fresh_app(tmp_path)
    try:
        result = app.test_cli_runner().invoke(args=command, input=stdin)

        assert result.exit_code == 0, result.output
        with app.app_context():
            with db.engine.connect() as conn:
                assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            assert "IdentityServerApi" in set(db.session.scalars(select(ApiScope.name)))
        # Alembic's env.py calls logging.fileConfig(), which would silence every existing logger
        assert not logging.getLogger("identity.requests").disabled
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("uri", ["postgresql+psycopg://identity:not-this-password@127.0.0.1:1/identity",
                                 "sqlite:////nonexistent-folder/identity.db"], ids=["refused port", "no such folder"])
@pytest.mark.parametrize("command", [["users", "list"], ["seed", DEMO_SEED], ["purge"]], ids=lambda c: c[0])
def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path, uri, command):
    """A wrong FLASK_SQLALCHEMY_DATABASE_URI (host, port, folder) is one `Error:` line, exit 1, and
    the line does not show the URI's password."""
    result = fresh_app(tmp_path, SQLALCHEMY_DATABASE_URI=uri).test_cli_runner().invoke(args=command)

    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.output.startswith("Error: database unreachable") and len(result.output.splitlines()) == 1, result.output
    assert "SQLALCHEMY_DATABASE_URI" in result.output and "not-this-password" not in result.output


def test_migrations_match_the_models(app):
    from identity.models import partial_indexes

    partial_indexes.declare()
    with app.app_context():
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


# --- clients ---------------------------------------------------------------------------------


def test_clients_add_prints_a_generated_secret_exactly_once_and_stores_a_hash(app, runner):
    result = runner.invoke(args=["clients", "add", "reports", "--name", "Reports", "--grant-type", "client_credentials",
                                 "--scope", "IdentityServerApi"])

    assert result.exit_code == 0, result.output
    secret_lines = [line for line in result.output.splitlines() if "secret" in line.lower()]
    assert len(secret_lines) == 1
    secret = secret_lines[0].rsplit(" ", 1)[-1]
    assert len(secret) >= 32
    assert result.output.count(secret) == 1
    client = one(app, Client, client_id="reports")
    assert client.client_name == "Reports"
    assert client.allowed_grant_types == ["client_credentials"]
    assert client.allowed_scopes == ["IdentityServerApi"]
    assert verify_client_secret(client.secret_hashes, secret)
    assert not verify_client_secret(client.secret_hashes, secret + "x")
    assert secret not in everything(app)
    listed = runner.invoke(args=["clients", "list"])
    assert "reports" in listed.output and secret not in listed.output


def test_clients_add_public_client_prints_no_secret(app, runner):
    result = runner.invoke(args=["clients", "add", "web", "--public", "--grant-type", "authorization_code",
                                 "--redirect-uri", "https://web.example.com/cb", "--scope", "openid"])

    assert result.exit_code == 0, result.output
    assert "secret" not in result.output.lower()
    client = one(app, Client, client_id="web")
    assert client.is_public and client.require_pkce
    assert client.redirect_uris == ["https://web.example.com/cb"]
    assert "web\tpublic" in runner.invoke(args=["clients", "list"]).output


@pytest.mark.parametrize(
    "args, expected",
    [
        (["x", "--grant-type", "device_code"], ["allowed_grant_types", "device_code"]),
        (["x", "--public", "--grant-type", "client_credentials"], ["allowed_grant_types", "client_credentials"]),
        (["x", "--grant-type", "authorization_code", "--redirect-uri", "https://a.example/cb#f"], ["redirect_uris", "fragment"]),
        (["x", "--grant-type", "authorization_code"], ["redirect_uris"]),
        (["x", "--grant-type", "client_credentials", "--scope", "payroll"], ["allowed_scopes", "payroll"]),
        (["x", "--grant-type", "password", "--access-token-lifetime", "5"], ["access_token_lifetime"]),
        (["has space", "--grant-type", "password"], ["client_id"]),
    ],
    ids=["unknown grant", "public client_credentials", "fragment", "no redirect uri", "unknown scope", "lifetime", "client_id"],
)
def test_clients_add_refuses_invalid_input(app, runner, args, expected):
    result = runner.invoke(args=["clients", "add", *args])

    assert result.exit_code == 1
    assert result.output.startswith("Error:")
    for text in expected:
        assert text in result.output
    assert "Traceback" not in result.output
    assert count(app, Client) == 0


def test_clients_add_refuses_a_duplicate(app, runner):
    args = ["clients", "add", "dup", "--grant-type", "password"]
    assert runner.invoke(args=args).exit_code == 0

    result = runner.invoke(args=args)

    assert result.exit_code == 1
    assert "already exists" in result.output
    assert count(app, Client) == 1


def test_clients_add_without_grant_type_is_a_usage_error(app, runner):
    result = runner.invoke(args=["clients", "add", "x"])

    assert result.exit_code == 2
    assert "--grant-type" in result.output


def test_clients_remove(app, runner, seeded):
    result = runner.invoke(args=["clients", "remove", "spa"])

    assert result.exit_code == 0, result.output
    assert "Removed client spa" in result.output
    assert one(app, Client, client_id="spa") is None
    assert one(app, Client, client_id="mobile") is not None
    assert "spa" not in runner.invoke(args=["clients", "list"]).output


def test_clients_remove_unknown(app, runner):
    result = runner.invoke(args=["clients", "remove", "ghost"])

    assert result.exit_code == 1
    assert "ghost" in result.output


def test_clients_list(runner, seeded):
    result = runner.invoke(args=["clients", "list"])

    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["mobile", "mobile-pkce", "service", "spa"]
    assert "mobile\tconfidential\thybrid" in result.output
    assert "mobile-pkce\tpublic\tauthorization_code" in result.output
    assert "spa\tpublic\tauthorization_code" in result.output


# --- users -----------------------------------------------------------------------------------


def test_users_add_reads_the_password_from_stdin(app, runner):
    result = add_user(runner, "bob", GOOD_PASSWORD, "--email", "bob@example.com", "--name", "Bob Builder")

    assert result.exit_code == 0, result.output
    assert GOOD_PASSWORD not in result.output
    bob = one(app, User, username="bob")
    assert (bob.email, bob.name, bob.password_version) == ("bob@example.com", "Bob Builder", 1)
    assert password_ok(app, bob, GOOD_PASSWORD)
    assert GOOD_PASSWORD not in everything(app)
    listed = runner.invoke(args=["users", "list"])
    assert listed.exit_code == 0
    assert "bob\tbob@example.com\tBob Builder" in listed.output


@pytest.mark.parametrize(
    "username, password, extra, expected",
    [
        ("bob", "too-short", [], ["password", "15"]),
        ("bob", "1qaz2wsx3edc4rfv", [], ["password", "common"]),
        ("correcthorsebatterystaple", "correcthorsebatterystaple", [], ["password", "user name"]),
        ("bob", "bobby.tables@example.com", ["--email", "bobby.tables@example.com"], ["password", "email"]),
        ("bob", GOOD_PASSWORD, ["--email", "not-an-email"], ["email"]),
        ("bob smith", GOOD_PASSWORD, [], ["username"]),
        ("\ufb03" * 100, GOOD_PASSWORD, [], ["username", "at most 150"]),  # 300 characters once casefolded
        ("bob", GOOD_PASSWORD, ["--email", "\u00df" * 300 + "@example.org"], ["email", "at most 320"]),
    ],
    ids=["short", "common", "username", "email", "bad email", "bad username", "long folded username",
         "long folded email"],
)
def test_users_add_enforces_the_policy(app, runner, username, password, extra, expected):
    result = add_user(runner, username, password, *extra)

    assert result.exit_code == 1
    for text in expected:
        assert text in result.output
    assert count(app, User) == 0


def test_users_add_without_a_password_on_stdin(app, runner):
    result = runner.invoke(args=["users", "add", "bob"], input="")

    assert result.exit_code == 1
    assert "password" in result.output
    assert count(app, User) == 0


def test_users_add_refuses_a_taken_name_or_email(app, runner):
    assert add_user(runner, "bob", GOOD_PASSWORD, "--email", "bob@example.com").exit_code == 0

    same_name = add_user(runner, "BOB", NEW_PASSWORD)
    same_email = add_user(runner, "robert", NEW_PASSWORD, "--email", "Bob@Example.com")

    assert same_name.exit_code == 1 and "already exists" in same_name.output
    assert same_email.exit_code == 1 and "email" in same_email.output
    assert count(app, User) == 1


def test_users_remove(app, runner, seeded):
    result = runner.invoke(args=["users", "remove", "alice"])

    assert result.exit_code == 0, result.output
    assert one(app, User, username="alice") is None
    assert runner.invoke(args=["users", "remove", "alice"]).exit_code == 1


def test_a_removed_users_id_is_never_given_to_another(app, runner):
    """The audit log names users by their row id and keeps their events after `users remove`
    (AUDIT_RETENTION_DAYS). On SQLite a table without AUTOINCREMENT gives the next row the
    largest id plus one: the user added after the newest user was removed took that one's id, and
    `audit tail` showed the removed user's sign-ins and password changes as the new user's."""
    assert add_user(runner, "bob").exit_code == 0
    bob = one(app, User, username="bob")
    assert runner.invoke(args=["users", "set-password", "bob"], input=NEW_PASSWORD + "\n").exit_code == 0
    assert runner.invoke(args=["users", "remove", "bob"]).exit_code == 0

    assert add_user(runner, "carol").exit_code == 0

    carol = one(app, User, username="carol")
    assert carol.id != bob.id
    with app.app_context():
        carols = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == carol.id).order_by(AuditEvent.id)).all()
        bobs = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == bob.id).order_by(AuditEvent.id)).all()
    # bob's creation, password set and removal, still his alone
    assert carols == ["user_created"] and bobs == ["user_created", "password_set", "user_removed"], (carols, bobs)


def test_users_set_password(app, runner, seeded):
    before = one(app, User, username="alice")

    result = runner.invoke(args=["users", "set-password", "alice"], input=NEW_PASSWORD + "\n")

    assert result.exit_code == 0, result.output
    alice = one(app, User, username="alice")
    assert alice.password_version == before.password_version + 1
    assert password_ok(app, alice, NEW_PASSWORD)
    assert not password_ok(app, alice, "tulip-quartz-harbor-917")
    assert NEW_PASSWORD not in everything(app)


@pytest.mark.parametrize("password", ["short", "alice@example.com", "1qaz2wsx3edc4rfv"])
def test_users_set_password_enforces_the_policy(app, runner, seeded, password):
    before = one(app, User, username="alice")

    result = runner.invoke(args=["users", "set-password", "alice"], input=password + "\n")

    assert result.exit_code == 1
    assert "password" in result.output
    after = one(app, User, username="alice")
    assert (after.password_hash, after.password_version) == (before.password_hash, before.password_version)


def test_users_set_password_unknown_user(runner):
    result = runner.invoke(args=["users", "set-password", "ghost"], input=NEW_PASSWORD + "\n")

    assert result.exit_code == 1
    assert "ghost" in result.output


def test_password_is_never_an_argument(runner):
    for command in (["users", "add"], ["users", "set-password"]):
        assert "--password" not in runner.invoke(args=[*command, "--help"]).output


# --- scopes ----------------------------------------------------------------------------------


def test_scopes_add_list_remove(app, runner):
    added = runner.invoke(args=["scopes", "add", "orders", "--display-name", "Orders API"])
    assert added.exit_code == 0, added.output

    listed = runner.invoke(args=["scopes", "list"])
    assert "orders\tOrders API" in listed.output
    assert "IdentityServerApi" in listed.output

    removed = runner.invoke(args=["scopes", "remove", "orders"])
    assert removed.exit_code == 0, removed.output
    assert one(app, ApiScope, name="orders") is None


@pytest.mark.parametrize("name", ["IdentityServerApi", "openid", "has space", 'quo"te'])
def test_scopes_add_refuses_taken_or_bad_names(app, runner, name):
    before = count(app, ApiScope)

    result = runner.invoke(args=["scopes", "add", name])

    assert result.exit_code == 1
    assert result.output.startswith("Error:")
    assert count(app, ApiScope) == before


def test_scopes_remove_refuses_a_scope_in_use(app, runner):
    assert runner.invoke(args=["scopes", "add", "orders"]).exit_code == 0
    assert runner.invoke(args=["clients", "add", "shop", "--grant-type", "client_credentials", "--scope", "orders"]).exit_code == 0

    result = runner.invoke(args=["scopes", "remove", "orders"])

    assert result.exit_code == 1
    assert "shop" in result.output
    assert one(app, ApiScope, name="orders") is not None


def test_the_local_api_scope_cannot_be_removed(app, runner):
    result = runner.invoke(args=["scopes", "remove", "IdentityServerApi"])

    assert result.exit_code == 1
    assert "IdentityServerApi" in result.output
    assert one(app, ApiScope, name="IdentityServerApi") is not None


def test_scopes_remove_unknown(runner):
    result = runner.invoke(args=["scopes", "remove", "ghost"])

    assert result.exit_code == 1
    assert "ghost" in result.output


# --- keys and audit ------------------------------------------------------------------------------


def key_lines(runner) -> list[list[str]]:
    result = runner.invoke(args=["keys", "list"])
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.output.splitlines()]


def test_keys_list_creates_the_configured_keys(app, runner):
    lines = key_lines(runner)

    assert sorted((alg, state) for _, alg, state, *_ in lines) == [("ES256", "current"), ("RS256", "current")]
    assert count(app, SigningKey) == 2
    assert key_lines(runner) == lines  # listing again creates nothing


def test_keys_rotate(app, runner):
    old = {kid for kid, *_ in key_lines(runner)}

    result = runner.invoke(args=["keys", "rotate"])

    assert result.exit_code == 0, result.output
    new = {kid for kid, *_ in key_lines(runner) if _[1] == "pending"}  # published, signing later
    assert len(new) == 2 and not new & old
    for kid in new:
        assert kid in result.output
    states = {kid: state for kid, _, state, *_ in key_lines(runner)}
    assert {states[kid] for kid in old} == {"current"}


def test_audit_tail(app, runner, seeded):
    runner.invoke(args=["clients", "remove", "spa"])
    runner.invoke(args=["keys", "rotate"])

    result = runner.invoke(args=["audit", "tail"])

    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert [e["event"] for e in events] == ["seeded", "client_removed", "key_rotated"]
    assert events[1]["client_id"] == "spa"
    last = runner.invoke(args=["audit", "tail", "-n", "1"])
    assert [json.loads(line)["event"] for line in last.output.splitlines()] == ["key_rotated"]
    assert count(app, AuditEvent) == 3


def test_audit_tail_takes_a_count_larger_than_the_database_integer(app, runner, seeded):
    """A count past a 64-bit integer (as `-n 1e30` means "everything") prints the whole log, not a traceback."""
    result = runner.invoke(args=["audit", "tail", "-n", "9" * 30])

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["event"] for line in result.output.splitlines()] == ["seeded"]


def test_audit_tail_refuses_a_non_positive_count(runner):
    result = runner.invoke(args=["audit", "tail", "-n", "0"])

    assert result.exit_code == 2
    assert "--lines" in result.output


# --- settings a command needs ------------------------------------------------------------------


def test_a_command_that_needs_a_missing_setting_names_it_in_one_line(app):
    from identity.cli import requires_settings

    ran = []

    @app.cli.command("needs-a-key")
    @requires_settings("SECRET_KEY", "EXAMPLE_ENCRYPTION_KEY")
    def needs_a_key():
        ran.append(True)

    result = app.test_cli_runner().invoke(args=["needs-a-key"])

    assert result.exit_code == 1
    assert result.output == "Error: EXAMPLE_ENCRYPTION_KEY is required in production: set FLASK_EXAMPLE_ENCRYPTION_KEY\n"
    assert ran == []
    app.config["EXAMPLE_ENCRYPTION_KEY"] = "set"
    assert app.test_cli_runner().invoke(args=["needs-a-key"]).exit_code == 0
    assert ran == [True]
