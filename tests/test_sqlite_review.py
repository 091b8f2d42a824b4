"""A review from outside: the embedded SQLite database at its edges (several workers writing at
once, locks held by other processes, the file and its folder), on real servers and a real file,
whatever FLASK_SQLALCHEMY_DATABASE_URI says (so `database_independent`)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app import create_app
from conftest import make_config
from identity.config.startup import ConfigurationError
from identity.extensions import db
from identity.services.schema import ensure_schema, head_revision
from test_container_review import _read_only_app_dir, needs_mounts
from servers import (ROOT, GunicornServer, flask_cli, password_grant_seed, run_together, server_env,
                     token_request)

pytestmark = [pytest.mark.database_independent]

NOBODY = 65534
CLIENT, SECRET, USER, PASSWORD = "svc", "svc-secret-for-review", "bob", "a-long-password-for-bob-1"


@pytest.fixture(scope="module")
def locking_server(tmp_path_factory):
    """gunicorn, 4 sync workers, on a SQLite file whose busy timeout is 1 s, seeded."""
    tmp = tmp_path_factory.mktemp("sqlite-review")
    seed = tmp / "seed.json"
    seed.write_text(json.dumps(password_grant_seed(CLIENT, SECRET, USER, PASSWORD, offline_access=True)))
    with GunicornServer("sqlite:///" + str(tmp / "identity.db"), workers=4, log_dir=tmp,
                        env={"FLASK_SQLALCHEMY_ENGINE_OPTIONS": '{"connect_args": {"timeout": 1}}'}) as server:
        server.cli(["seed", str(seed)])
        server.file = tmp / "identity.db"
        yield server


def _refresh_tokens(server, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        answer = token_request(server.url, CLIENT, SECRET, grant_type="password", username=USER, password=PASSWORD,
                               scope="openid offline_access")
        assert answer.status_code == 200, answer.text
        tokens.append(answer.json()["refresh_token"])
    return tokens


def _refresh_all_at_once(server, tokens: list[str]) -> list[tuple[int, str | None]]:
    """Each token refreshed at the same moment (one request per worker): (status, Retry-After)."""
    def refresh(token):
        return lambda: token_request(server.url, CLIENT, SECRET, grant_type="refresh_token", refresh_token=token)

    answers = run_together(*(refresh(token) for token in tokens))
    return [a if isinstance(a, BaseException) else (a.status_code, a.headers.get("Retry-After")) for a in answers]


def _each_token_still_refreshes(server, tokens: list[str]) -> None:
    """The lock gone, every token still works: the 503s wrote nothing."""
    for token in tokens:
        answer = token_request(server.url, CLIENT, SECRET, grant_type="refresh_token", refresh_token=token)
        assert answer.status_code == 200, answer.text


def test_writers_queued_behind_a_held_lock_each_get_their_503(locking_server):
    """deployment.md: "SQLite waits for a lock at most its busy timeout (connect_args.timeout) and
    answers 503". Another process (an operator's sqlite3, a VACUUM) holds SQLite's write lock
    while four refreshes arrive at once on four workers: each answers 503 with Retry-After."""
    tokens = _refresh_tokens(locking_server, 4)
    holder = sqlite3.connect(str(locking_server.file), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers = _refresh_all_at_once(locking_server, tokens)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [(503, "5")] * 4, answers
    _each_token_still_refreshes(locking_server, tokens)


def test_a_writer_that_got_the_machines_lock_past_its_busy_timeout_gives_up(locking_server):
    """The workers of one machine queue on a lock file beside the database (`<database>.writelock`)
    before SQLite's own lock. A writer queued behind one that waited its busy timeout out got the
    file and then waited a whole busy timeout more for SQLite's lock: four refreshes at once got
    their 503s after 1, 2, 3 and 4 s, and with the default 30 s the second waited past gunicorn's
    timeout and was killed unanswered. The waits for both locks last one busy timeout together.

    Judged by what is written, never by the clock: SQLite's lock (held by another process) and the
    lock file (held here) are let go in that order well after the request's busy timeout (1 s).
    A writer that still waited its busy timeout for SQLite's lock from there got it and rotated
    the token (200); one that keeps to its deadline answers 503 and writes nothing."""
    [token] = _refresh_tokens(locking_server, 1)
    holder = sqlite3.connect(str(locking_server.file), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    lock_file = open(str(locking_server.file) + ".writelock", "rb")  # noqa: SIM115
    fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
    answers: list = []
    request = threading.Thread(target=lambda: answers.extend(_refresh_all_at_once(locking_server, [token])))
    try:
        request.start()
        time.sleep(5)  # the request waits on the lock file, and its 1 s deadline passes
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
        lock_file.close()
        request.join(60)
    assert answers == [(503, "5")], answers
    _each_token_still_refreshes(locking_server, [token])


def _documented_default(setting: str) -> str:
    """The default column of `setting`'s row in docs/configuration.md: its first `code` value."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| `{setting}` |"))
    return re.findall(r"`([^`]+)`", row.split(" | ")[1])[0]


def test_the_documented_default_database_uri_set_explicitly_is_the_default_file():
    """configuration.md gave `sqlite:///instance/identity.db` as FLASK_SQLALCHEMY_DATABASE_URI's
    default. Set explicitly (an operator writing the default down in a unit file), it named
    instance/instance/identity.db: Flask-SQLAlchemy reads a relative SQLite path from the instance
    folder, not the working directory; every command said "unable to open database file"."""
    documented = _documented_default("FLASK_SQLALCHEMY_DATABASE_URI")
    files = []
    for uri in (None, documented):
        app = create_app(make_config(uri))
        with app.app_context():
            files.append(db.engine.url.database)
            db.engine.dispose()
    assert files[1] == files[0], f"{documented} names {files[1]}, the default is {files[0]}"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_a_sqlite_uri_filename_database_serves_sign_ins(tmp_path):
    """A URI filename (`sqlite:///file:/path/identity.db?uri=true`, SQLAlchemy's form for SQLite's
    own options) passed the start-up checks and /readyz, and then every sign-in, token and refresh
    was a 503: the workers' write lock was opened at `file:/path/identity.db.writelock`, a path
    under a folder named `file:` in the working directory."""
    uri = f"sqlite:///file:{tmp_path}/identity.db?uri=true"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(password_grant_seed(CLIENT, SECRET, USER, PASSWORD)))
    app = create_app(make_config(uri))
    seeded = app.test_cli_runner().invoke(args=["seed", str(seed)])
    assert seeded.exit_code == 0, seeded.output
    client = app.test_client()
    answer = client.post("/connect/token", base_url="https://localhost", headers=_basic(CLIENT, SECRET),
                         data={"grant_type": "password", "username": USER, "password": PASSWORD, "scope": "openid"})
    with app.app_context():
        db.engine.dispose()
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert (tmp_path / "identity.db.writelock").exists()


def test_a_new_database_named_by_a_uri_filename_is_private(tmp_path):
    """cli.md: "A new SQLite database (and its -wal and -shm files) is created readable by its
    owner only (0600)". Named by a URI filename (`sqlite:///file:...?uri=true`) it was created
    with the umask's mode (0644: world-readable password hashes)."""
    app = create_app(make_config(f"sqlite:///file:{tmp_path}/identity.db?mode=rwc&uri=true"))
    with app.app_context():
        ensure_schema()
        db.engine.dispose()
    assert oct((tmp_path / "identity.db").stat().st_mode & 0o777) == "0o600"


def test_a_question_mark_in_the_database_path_is_refused_not_cut_short(tmp_path):
    """`sqlite:////srv/id?2/identity.db`: the URL's query began at the `?`, SQLAlchemy dropped
    `2/identity.db` as an option the driver does not take (a warning), and the server and every
    command used a new, empty database `/srv/id` instead; an option that is no SQLite option is
    refused at start, as a PostgreSQL one libpq does not know is."""
    folder = tmp_path / "id?2"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match="not a SQLite connection option"):
        create_app(make_config(f"sqlite:///{folder}/identity.db"))
    assert not (tmp_path / "id").exists()
    create_app(make_config(f"sqlite:///{str(folder).replace('?', '%3F')}/identity.db?timeout=5"))


def _longest_write_lock(path: str, during) -> float:
    """Run `during()` while another connection tries SQLite's write lock every few milliseconds;
    the longest stretch (s) in which it could not take it."""
    stop, longest, since = threading.Event(), [0.0], [None]

    def probe():
        probe_db = sqlite3.connect(path, timeout=0, isolation_level=None)
        while not stop.is_set():
            try:
                probe_db.execute("BEGIN IMMEDIATE")
                probe_db.execute("ROLLBACK")
                if since[0] is not None:
                    longest[0] = max(longest[0], time.monotonic() - since[0])
                since[0] = None
            except sqlite3.OperationalError:
                since[0] = since[0] or time.monotonic()
            time.sleep(0.005)
        probe_db.close()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        during()
    finally:
        stop.set()
        thread.join()
    return longest[0]


def test_seeding_many_users_does_not_hold_the_write_lock_while_hashing(tmp_path):
    """A seed file's users (and client secrets) were hashed one by one after the seed's first
    write, holding SQLite's one write lock through every Argon2id hash (about 25 ms each at the
    production cost): a seed of 40 users run beside a serving instance made every sign-in,
    refresh and password change wait seconds (a few hundred users: the busy timeout, and 503s).
    accounts.new_password_hash: hash "before their first write"."""
    path = tmp_path / "identity.db"
    env = server_env("sqlite:///" + str(path))
    first = tmp_path / "first.json"
    first.write_text(json.dumps(password_grant_seed(CLIENT, SECRET, USER, PASSWORD)))
    flask_cli(["seed", str(first)], env)
    many = tmp_path / "many.json"
    many.write_text(json.dumps({
        "clients": [{"client_id": f"app{i}", "client_name": f"App {i}", "client_secrets": [f"secret-of-app-{i}-long"],
                     "allowed_grant_types": ["client_credentials"], "allowed_scopes": []} for i in range(5)],
        "users": [{"username": f"user{i}", "email": f"user{i}@example.com", "password": f"{PASSWORD}-{i}"}
                  for i in range(40)],
    }))
    held = _longest_write_lock(str(path), lambda: flask_cli(["seed", str(many)], env))
    assert held < 0.4, f"the seed held the write lock for {held:.2f} s"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root (and setpriv) to drop its file-permission override")
def test_a_lock_file_another_user_made_leaves_the_service_able_to_write():
    """An operator's `sudo flask --app app purge` (any command that writes) on the service's
    database made the workers' write lock file `identity.db.writelock`, owned by root and 0644;
    the service's user could no longer open it for writing, and every sign-in, refresh and purge
    of the server failed from then on ("Permission denied", 503). SQLite gives its own -wal and
    -shm files the database's owner; the lock file needs reading only.

    The same, the other way round: the lock file belongs to another user (nobody, 0644), and the
    service's command runs as root without CAP_DAC_OVERRIDE, so it may write only what it owns,
    as any user may (a process of another user could not read this checkout's virtualenv, which
    may sit in a private directory, such as the CI's mktemp one)."""
    folder = Path(tempfile.mkdtemp(prefix="sqlite-review-owner-"))
    try:
        path = folder / "identity.db"
        app = create_app(make_config("sqlite:///" + str(path)))
        with app.app_context():
            ensure_schema()
            db.engine.dispose()
        env = server_env("sqlite:///" + str(path), extra={"FLASK_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()})
        flask_cli(["purge"], env)  # made the lock file
        lock = folder / "identity.db.writelock"
        assert lock.exists()
        os.chown(lock, NOBODY, NOBODY)
        lock.chmod(0o644)
        without_override = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all",
             sys.executable, "-m", "flask", "--app", "app", "purge"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert without_override.returncode == 0, without_override.stderr.strip().splitlines()[-1:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _upgrade_with_file_size_limit(env: dict[str, str], limit: int | None) -> subprocess.CompletedProcess:
    """`flask db upgrade`, its files unable to grow past `limit` bytes (RLIMIT_FSIZE: writes past
    it fail with EFBIG, as on a full disk)."""
    def limited():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                          preexec_fn=limited, capture_output=True, text=True, timeout=120)


BEFORE_THE_PASSKEYS_REBUILD = "e7a2c9d4b6f1"  # 5743972ee32a's down_revision


def test_a_migration_that_fails_on_a_full_disk_leaves_nothing_behind(tmp_path):
    """A batch migration on SQLite (a table rebuilt: 5743972ee32a, passkeys) whose disk filled up
    midway left `_alembic_tmp_passkeys` behind: its CREATE TABLE had committed on its own (sqlite3
    begins a transaction only before INSERT, UPDATE or DELETE). Once space was back, every `db
    upgrade`, and so every command, failed with "table _alembic_tmp_passkeys already exists"."""
    path = tmp_path / "identity.db"
    env = server_env("sqlite:///" + str(path))
    flask_cli(["db", "upgrade"], env)
    flask_cli(["db", "downgrade", BEFORE_THE_PASSKEYS_REBUILD], env)  # the revisions after it too
    with sqlite3.connect(str(path)) as checkpoint:
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    failed = _upgrade_with_file_size_limit(env, 40_000)
    assert failed.returncode != 0, failed.stdout
    with sqlite3.connect(str(path)) as left:
        leftovers = [name for (name,) in left.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'")]
    assert leftovers == [], f"the failed upgrade left {leftovers}"
    again = _upgrade_with_file_size_limit(env, None)
    assert again.returncode == 0, again.stderr.strip().splitlines()[-1:]
    with sqlite3.connect(str(path)) as done:
        assert done.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert done.execute("PRAGMA foreign_key_check").fetchall() == []


def test_the_busy_timeout_in_the_uri_is_the_one_used(tmp_path):
    """`sqlite:///...?timeout=2` (SQLAlchemy's way to set sqlite3's busy timeout in the URL, as
    PostgreSQL's `?connect_timeout=` is honoured) was overridden by the default connect_args'
    30 s: a writer behind a held lock waited 30 s, not the 2 the operator asked for."""
    app = create_app(make_config(f"sqlite:///{tmp_path}/identity.db?timeout=2"))
    with app.app_context():
        busy = db.session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar()
        db.session.rollback()
        db.engine.dispose()
    assert busy == 2000


@needs_mounts
def test_a_relative_sqlite_path_in_a_read_only_application_directory_is_one_line(tmp_path):
    """`sqlite:///identity.db` (a path read from the instance folder, configuration.md) in an image
    whose application directory is read-only: Flask-SQLAlchemy's making of instance/ raised, and
    each worker and command died with PermissionError's (or OSError's) traceback, where the same
    case with the setting unset stops in one line naming FLASK_SQLALCHEMY_DATABASE_URI."""
    result = _read_only_app_dir(tmp_path, f"FLASK_SQLALCHEMY_DATABASE_URI=sqlite:///identity.db "
                                          f"{sys.executable} -c 'from app import create_app; create_app()'")
    assert "Traceback" not in result.stderr, result.stderr.strip().splitlines()[-1]
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if "rate limits are counted" not in line]
    assert len(lines) == 1 and "FLASK_SQLALCHEMY_DATABASE_URI" in lines[0] and "Read-only file system" in lines[0], lines
