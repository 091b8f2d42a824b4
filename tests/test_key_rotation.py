"""Signing keys that rotate themselves, safely, and are encrypted at rest (issue 15, part C).

Time is driven through the key service's clock (`keys.now`, identity/clock.py's function), so
a 90-day schedule is walked in milliseconds; tokens themselves are issued and checked at the
real time. Concurrency is real: two apps (two workers or instances) on the same database,
in two threads, held together at the moment each has decided to make a key.
"""

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from app import create_app
from bench.server import free_port
from identity.clock import now as real_now
from identity.extensions import db
from identity.models import SigningKey
from identity.services import keys, tokens
from identity.config.startup import ConfigurationError

from test_keys import JWKS, issue, kid_of, published, same_database_app, verify

ROOT = Path(__file__).resolve().parent.parent
DAY = 24 * 3600
PRIVATE_MEMBERS = ('"d"', '"p"', '"q"', '"dp"', '"dq"', '"qi"')


class Clock:
    """The key service's idea of now, moved forward by the test."""

    def __init__(self, monkeypatch):
        self.offset = 0
        monkeypatch.setattr(keys, "now", lambda: real_now() + self.offset)

    def travel(self, seconds: int) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def raw_rows(app) -> list:
    with app.app_context():
        return list(db.session.execute(text("SELECT kid, alg, private_jwk FROM signing_keys ORDER BY id")))


def kids_by_alg(app, alg: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(SigningKey.kid).where(SigningKey.alg == alg).order_by(SigningKey.id)))


# --- staged rotation -----------------------------------------------------------------------------


def test_a_rotated_key_is_published_first_and_signs_only_after_the_propagation_time(app, client, seeded, clock):
    old_token = issue(app)
    old_kid = kid_of(old_token)
    propagation = app.config["SIGNING_KEY_PROPAGATION_SECONDS"]
    retention = app.config["SIGNING_KEY_RETENTION_SECONDS"]

    rotate_now = real_now() + clock.offset
    with app.app_context():
        keys.rotate()
    new_kid = kids_by_alg(app, "ES256")[-1]
    assert new_kid != old_kid

    # published at once, so relying parties can fetch it before it is used ...
    assert {old_kid, new_kid} <= set(published(client))
    # ... but tokens are still signed with the old key
    assert kid_of(issue(app)) == old_kid

    clock.travel(propagation - 60)
    assert kid_of(issue(app)) == old_kid
    clock.travel(120)  # past the propagation time
    new_token = issue(app)
    assert kid_of(new_token) == new_kid
    assert {old_kid, new_kid} <= set(published(client))  # the old key verifies tokens in flight
    assert verify(app, old_token)["jti"] and verify(app, new_token)["jti"]

    # the old key stopped signing at rotate_now + propagation; it stays published for the retention time
    clock.offset = rotate_now + propagation + retention - 60 - real_now()
    assert old_kid in published(client)
    clock.offset += 120
    keyset = published(client)
    assert old_kid not in keyset and new_kid in keyset
    with pytest.raises(tokens.InvalidToken):
        verify(app, old_token)


def test_rotating_again_while_a_key_waits_makes_no_second_key(app, runner, seeded, clock):
    issue(app)
    first = runner.invoke(args=["keys", "rotate"])
    second = runner.invoke(args=["keys", "rotate"])

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert len(kids_by_alg(app, "ES256")) == 2 and len(kids_by_alg(app, "RS256")) == 2
    waiting = kids_by_alg(app, "ES256")[-1]
    assert waiting in first.output and waiting in second.output
    states = {line.split("\t")[0]: line.split("\t")[2] for line in runner.invoke(args=["keys", "list"]).output.splitlines()}
    assert states[waiting] == "pending"
    assert states[kids_by_alg(app, "ES256")[0]] == "current"


# --- automatic rotation --------------------------------------------------------------------------


def test_keys_rotate_by_themselves_on_schedule(app, client, seeded, clock):
    first_kid = kid_of(issue(app))
    interval = app.config["SIGNING_KEY_ROTATION_SECONDS"]
    propagation = app.config["SIGNING_KEY_PROPAGATION_SECONDS"]

    clock.travel(interval - propagation - 60)
    assert set(published(client)) == set(kids_by_alg(app, "ES256") + kids_by_alg(app, "RS256"))
    assert len(kids_by_alg(app, "ES256")) == 1  # not due yet

    clock.travel(120)  # due: the successor is made and published, but does not sign yet
    assert kid_of(issue(app)) == first_kid
    successor = kids_by_alg(app, "ES256")[-1]
    assert successor != first_kid and successor in published(client)
    assert len(kids_by_alg(app, "RS256")) == 2

    clock.travel(propagation)  # the interval has passed: the successor signs
    assert kid_of(issue(app)) == successor
    assert len(kids_by_alg(app, "ES256")) == 2  # and nothing else was made meanwhile


def test_a_worker_that_was_off_for_long_still_waits_the_propagation_time(app, client, seeded, clock):
    first_kid = kid_of(issue(app))

    clock.travel(400 * DAY)  # far past the interval: the successor still waits its propagation time
    assert kid_of(issue(app)) == first_kid
    successor = kids_by_alg(app, "ES256")[-1]
    assert successor in published(client)
    clock.travel(app.config["SIGNING_KEY_PROPAGATION_SECONDS"] + 1)
    assert kid_of(issue(app)) == successor


# --- one key from concurrent rotators ------------------------------------------------------------


def _together(monkeypatch, parties: int):
    """Hold every party in key generation (after it decided to make a key, before it writes)
    until all have arrived, so they decide on the same state; a party that never arrives (it
    saw the other's key) releases the rest after a few seconds."""
    barrier = threading.Barrier(parties)
    generate = keys._generate
    missed = []  # a party that waited alone: the race did not happen as the test means it to

    def held(alg):
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            missed.append(alg)
        return generate(alg)

    monkeypatch.setattr(keys, "_generate", held)
    return missed


def _run_in_threads(apps, work):
    errors = []

    def run(app):
        try:
            with app.app_context():
                work()
        except Exception as err:  # reported below, with the thread's own error
            errors.append(err)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_two_instances_rotating_at_once_make_one_key(app, seeded, monkeypatch):
    issue(app)  # the first keys exist
    other = same_database_app(app)
    try:
        missed = _together(monkeypatch, 2)
        _run_in_threads([app, other], keys.rotate)
    finally:
        with other.app_context():
            db.engine.dispose()

    assert not missed  # both decided to make the same keys ...
    assert len(kids_by_alg(app, "ES256")) == 2  # ... and one of each was made
    assert len(kids_by_alg(app, "RS256")) == 2
    with app.app_context():
        events = db.session.scalars(text("SELECT detail FROM audit_events WHERE event = 'key_rotated'")).all()
    assert len(events) == 1


def test_two_instances_finding_rotation_due_at_once_make_one_key(app, seeded, clock, monkeypatch):
    issue(app)
    other = same_database_app(app)
    clock.travel(app.config["SIGNING_KEY_ROTATION_SECONDS"])
    try:
        missed = _together(monkeypatch, 2)
        _run_in_threads([app, other], lambda: keys.signing_key("ES256"))
    finally:
        with other.app_context():
            db.engine.dispose()

    assert not missed
    assert len(kids_by_alg(app, "ES256")) == 2


def test_two_instances_starting_on_an_empty_table_make_one_key_each_alg(app, monkeypatch):
    other = same_database_app(app)
    try:
        missed = _together(monkeypatch, 2)
        _run_in_threads([app, other], lambda: keys.signing_key("RS256"))
    finally:
        with other.app_context():
            db.engine.dispose()

    assert not missed
    assert len(kids_by_alg(app, "RS256")) == 1 and len(kids_by_alg(app, "ES256")) == 1


# --- emergency rotation --------------------------------------------------------------------------


def test_emergency_rotation_signs_at_once_and_drops_the_old_keys(app, client, runner, seeded):
    old_token = issue(app)
    old_kid = kid_of(old_token)

    result = runner.invoke(args=["keys", "rotate", "--now"])

    assert result.exit_code == 0, result.output
    new_token = issue(app)
    assert kid_of(new_token) != old_kid and kid_of(new_token) in result.output
    keyset = published(client)
    assert old_kid not in keyset and kid_of(new_token) in keyset
    with pytest.raises(tokens.InvalidToken):
        verify(app, old_token)
    assert verify(app, new_token)["jti"]
    warning = [line for line in result.output.splitlines() if "in flight" in line]
    assert len(warning) == 1 and "refused" in warning[0]
    states = {line.split("\t")[0]: line.split("\t")[2] for line in runner.invoke(args=["keys", "list"]).output.splitlines()}
    assert states[old_kid] == "revoked"


def test_once_an_emergency_rotation_returns_no_worker_signs_with_a_revoked_key(app, seeded):
    """Another worker read the key table just before the operator's `keys rotate --now`: the
    command returns only once that worker is due to re-read it (SIGNING_KEY_RELOAD_SECONDS)."""
    worker = same_database_app(app, SIGNING_KEY_RELOAD_SECONDS=1)
    operator = same_database_app(app, SIGNING_KEY_RELOAD_SECONDS=1)
    try:
        old_kid = kid_of(issue(worker))
        result = operator.test_cli_runner().invoke(args=["keys", "rotate", "--now"])
        assert result.exit_code == 0, result.output
        assert kid_of(issue(worker)) != old_kid
        assert "waited SIGNING_KEY_RELOAD_SECONDS, 1 s" in result.output
    finally:
        for other in (worker, operator):
            with other.app_context():
                db.engine.dispose()

# --- keys at rest --------------------------------------------------------------------------------


def test_private_keys_are_stored_encrypted(app, client):
    keyset = published(client)
    kek = app.config["KEY_ENCRYPTION_KEY"][0]

    rows = raw_rows(app)
    assert {kid for kid, _, _ in rows} == set(keyset)
    for kid, _, stored in rows:
        assert not any(member in stored for member in PRIVATE_MEMBERS), f"private key material of {kid} in the clear"
        assert not stored.lstrip().startswith("{")
        jwk = json.loads(Fernet(kek).decrypt(stored.encode()))
        assert jwk["kid"] == kid and "d" in jwk


def test_a_plaintext_key_from_before_is_encrypted_on_first_use_and_keeps_signing(app, seeded):
    plain = keys._generate("ES256")
    rsa = keys._generate("RS256")
    stamp = real_now() - 60
    with app.app_context():
        for key, alg in ((plain, "ES256"), (rsa, "RS256")):
            # what the previous version wrote: the private JWK as JSON
            db.session.execute(text(
                "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retired_at, generation, activates_at)"
                " VALUES (:kid, :alg, :jwk, :at, NULL, 1, :at)"),
                {"kid": key.kid, "alg": alg, "jwk": json.dumps(key.as_dict(private=True)), "at": stamp})
        db.session.commit()

    assert kid_of(issue(app)) == plain.kid  # no key is lost
    rows = raw_rows(app)
    assert len(rows) == 2
    for kid, _, stored in rows:
        assert not stored.lstrip().startswith("{") and '"d"' not in stored


@pytest.mark.parametrize("app_config", [{"KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}])
def test_key_encryption_key_rotation(app, client, runner, seeded, app_config):
    old_kek = app_config["KEY_ENCRYPTION_KEY"]
    old_token = issue(app)
    kids = set(published(client))
    new_kek = Fernet.generate_key().decode()

    # step 1: the new KEK first, the old one still listed: everything still decrypts
    both = same_database_app(app, KEY_ENCRYPTION_KEY=[new_kek, old_kek])
    try:
        assert verify(both, old_token)["jti"]
        with both.app_context():
            result = both.test_cli_runner().invoke(args=["keys", "reencrypt"])
        assert result.exit_code == 0, result.output
        assert "Re-encrypted 2 signing keys" in result.output
    finally:
        with both.app_context():
            db.engine.dispose()

    # step 2: every key is now under the new KEK alone
    for kid, _, stored in raw_rows(app):
        assert json.loads(Fernet(new_kek).decrypt(stored.encode()))["kid"] == kid
    only_new = same_database_app(app, KEY_ENCRYPTION_KEY=new_kek)
    try:
        assert verify(only_new, old_token)["jti"]
        assert kid_of(issue(only_new)) == kid_of(old_token)
        assert {k["kid"] for k in only_new.test_client().get(JWKS, base_url="https://localhost").get_json()["keys"]} == kids
    finally:
        with only_new.app_context():
            db.engine.dispose()


def test_reencrypt_refuses_and_changes_nothing_when_a_key_cannot_be_decrypted(app, client, seeded):
    published(client)
    before = raw_rows(app)
    stranger = same_database_app(app, KEY_ENCRYPTION_KEY=Fernet.generate_key().decode())
    try:
        with stranger.app_context():
            result = stranger.test_cli_runner().invoke(args=["keys", "reencrypt"])
    finally:
        with stranger.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert "KEY_ENCRYPTION_KEY" in result.output and "Traceback" not in result.output
    assert raw_rows(app) == before


# --- settings ------------------------------------------------------------------------------------


def make(instance, **config):
    base = {"TESTING": True, "SECRET_KEY": "k" * 32, "ISSUER": "https://id.example.test",
            "MAIL_SERVER": "smtp.example.test", "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")}
    return create_app({**base, **config})


def test_development_generates_a_key_encryption_key_in_the_instance_folder(instance):
    first = make(instance, ENVIRONMENT="development")
    path = instance / "key_encryption_key"

    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    kek = first.config["KEY_ENCRYPTION_KEY"]
    assert len(kek) == 1 and Fernet(kek[0])
    assert make(instance, ENVIRONMENT="development").config["KEY_ENCRYPTION_KEY"] == kek  # kept across restarts


@pytest.mark.parametrize("setting, value, words", [
    ("KEY_ENCRYPTION_KEY", "not-a-fernet-key", "Fernet"),
    ("KEY_ENCRYPTION_KEY", ["", Fernet.generate_key().decode()], "Fernet"),
    ("SIGNING_KEY_PROPAGATION_SECONDS", 300, "DISCOVERY_CACHE_SECONDS"),
    ("SIGNING_KEY_RETENTION_SECONDS", 3600, "longest"),
    ("SIGNING_KEY_ROTATION_SECONDS", 10 * DAY, "SIGNING_KEY_PROPAGATION_SECONDS"),
    ("SIGNING_KEY_ROTATION_SECONDS", "90 days", "SIGNING_KEY_ROTATION_SECONDS"),
])
def test_bad_key_settings_are_refused_at_start(instance, setting, value, words):
    with pytest.raises(ConfigurationError, match=words):
        make(instance, ENVIRONMENT="testing", **{setting: value})


def test_a_list_of_key_encryption_keys_is_accepted(instance):
    keks = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    app = make(instance, KEY_ENCRYPTION_KEY=keks)
    assert app.config["KEY_ENCRYPTION_KEY"] == keks
    assert not (instance / "key_encryption_key").exists()


def _production_env(tmp_path, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GUNICORN_", "WEB_CONCURRENCY"))}
    env.update({"FLASK_SECRET_KEY": "s" * 40, "FLASK_ISSUER": "https://id.example.test", "FLASK_SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "p.db"),
                "WEB_CONCURRENCY": "1", **extra})
    return env


def test_production_refuses_to_start_without_a_key_encryption_key(tmp_path):
    """The server as deployed (gunicorn -c gunicorn.conf.py) stops, with a line naming the setting."""
    env = _production_env(tmp_path, {"GUNICORN_BIND": f"127.0.0.1:{free_port()}"})
    refused = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)

    assert refused.returncode != 0
    # one line naming the setting, no traceback; gunicorn stops instead of respawning the worker
    lines = [line for line in refused.stderr.splitlines() if "KEY_ENCRYPTION_KEY" in line]
    assert len(lines) == 1, refused.stderr
    assert "KEY_ENCRYPTION_KEY is required in production: set FLASK_KEY_ENCRYPTION_KEY" in lines[0]
    assert "Traceback" not in refused.stderr
    assert "Worker failed to boot" in refused.stderr
    assert not (tmp_path / "p.db").exists()  # refused before touching the database

    started = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "keys", "list"], cwd=ROOT, timeout=120,
                             env=_production_env(tmp_path, {"FLASK_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}),
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert started.stdout.count("\tcurrent\t") == 2


def test_a_rotation_due_in_the_middle_of_a_writing_request_leaves_the_request_its_transaction(app, seeded, clock):
    """A key made while the request's own transaction is open neither commits nor rolls back the
    request's work (and on SQLite, whose one writer is then the request, does not wait for it)."""
    from identity.services import audit

    first = kid_of(issue(app))
    clock.travel(app.config["SIGNING_KEY_ROTATION_SECONDS"])
    with app.test_request_context():
        audit.record("test_event")  # the request has written and not committed
        keys.signing_key("ES256")  # the reload finds the rotation due
        successor = kids_by_alg(app, "ES256")[-1] if db.engine.dialect.name != "sqlite" else None
        db.session.rollback()  # the request fails: its own write goes ...
    with app.app_context():
        events = db.session.scalars(text("SELECT event FROM audit_events")).all()
    assert "test_event" not in events
    made = kids_by_alg(app, "ES256")
    if successor is not None:  # PostgreSQL: the key was made in a transaction of its own
        assert made == [first, successor]
    else:  # SQLite: in a savepoint of the request's transaction, gone with it; the next load makes it
        assert made == [first]
        with app.app_context():
            keys.signing_key("ES256")
        assert len(kids_by_alg(app, "ES256")) == 2


def test_a_first_key_made_by_a_request_that_rolls_back_never_signs_later(app):
    from identity.services import audit

    # a worker that never re-reads on its own: longer than any host's uptime, which is what
    # time.monotonic() counts (a ring marked for reload with 0 stayed fresh on a host up for less);
    # 4.75 years, so the propagation time that must exceed it stays within its 10-year bound
    worker = same_database_app(app, SIGNING_KEY_RELOAD_SECONDS=15 * 10**7, SIGNING_KEY_PROPAGATION_SECONDS=3 * 10**8,
                               SIGNING_KEY_ROTATION_SECONDS=4 * 10**9)
    try:
        with worker.test_request_context():
            audit.record("test_event")
            made_in_request = keys.signing_key("ES256").kid
            db.session.rollback()
        with worker.test_request_context():
            signing = keys.signing_key("ES256").kid
    finally:
        with worker.app_context():
            db.engine.dispose()

    assert kids_by_alg(app, "ES256") == [signing]  # whatever signs is in the table, for every worker to verify
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        assert signing == made_in_request  # made in a transaction of its own: kept


def test_the_migration_keeps_the_keys_of_the_previous_version_and_they_are_encrypted_on_first_start(tmp_path):
    """From the previous schema with its plaintext keys (one retired, still published): after
    `db upgrade` and a first start the same key signs, the retired one is still published and
    every private key is encrypted."""
    from flask_migrate import upgrade

    from conftest import make_config
    from identity.services.schema import MIGRATIONS_DIR, _logging_kept, attach_migrate

    app = create_app(make_config("sqlite:///" + str(tmp_path / "old.db")))
    retired, current, rsa = keys._generate("ES256"), keys._generate("ES256"), keys._generate("RS256")
    stamp = real_now()
    try:
        with app.app_context():
            attach_migrate(app)
            with _logging_kept():
                upgrade(directory=MIGRATIONS_DIR, revision="3b1f0c2d9a47")
            for key, alg, retired_at in ((retired, "ES256", stamp - 3600), (current, "ES256", None), (rsa, "RS256", None)):
                db.session.execute(text(
                    "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retired_at)"
                    " VALUES (:kid, :alg, :jwk, :created, :retired)"),
                    {"kid": key.kid, "alg": alg, "jwk": json.dumps(key.as_dict(private=True)),
                     "created": stamp - 7200, "retired": retired_at})
            db.session.commit()
            with _logging_kept():
                upgrade(directory=MIGRATIONS_DIR)

        with app.test_request_context():
            assert keys.signing_key("ES256").kid == current.kid
            assert keys.signing_key("RS256").kid == rsa.kid
            body, _ = keys.jwks()
        assert {k["kid"] for k in json.loads(body)["keys"]} == {retired.kid, current.kid, rsa.kid}
        rows = raw_rows(app)
        assert [kid for kid, _, _ in rows] == [retired.kid, current.kid, rsa.kid]
        assert all(stored.startswith("gAAAAA") and '"d"' not in stored for _, _, stored in rows)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def read_at_each_step_of_a_reload(app, change, read, *, instructions: bool = False) -> list:
    """Run `change()` in an app context in another thread, pausing at each line of the key ring's
    reload (keys._load) it runs, or at each bytecode instruction (`instructions`: a line may store
    several things); at each pause `read()` runs here, in an app context. What it read before the
    change (the ring loaded just now), and its results at the pauses, in order."""
    with app.app_context():
        keys.jwks()  # the ring loaded just now
        db.session.commit()
        before = read()
    paused, go = threading.Event(), threading.Event()
    failures: list = []

    def at_each_step(frame, event, arg):
        frame.f_trace_opcodes = instructions
        if event == ("opcode" if instructions else "line"):
            paused.set()
            go.wait(30)
            go.clear()
        return at_each_step

    def trace_the_reload(frame, event, arg):
        return at_each_step if event == "call" and frame.f_code is keys._load.__code__ else None

    def run():
        sys.settrace(trace_the_reload)
        try:
            with app.app_context():
                change()
        except Exception as err:  # reported below
            failures.append(err)
        finally:
            sys.settrace(None)
            paused.set()

    changing = threading.Thread(target=run)
    changing.start()
    reads = []
    while changing.is_alive() or paused.is_set():
        if not paused.wait(30):
            break
        paused.clear()
        with app.app_context():
            reads.append(read())
        go.set()
    changing.join(30)
    assert not failures and not changing.is_alive(), failures
    return before, reads


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 300}])
def test_the_jwks_and_its_etag_are_read_together_while_a_reload_replaces_them(app, seeded):
    """The JWKS is served without Flask from the worker's ring (keys.cached_jwks, read by another
    thread of the worker without the ring's lock). A reload stored the new body, then its ETag:
    a read between the two gave the new body with the old ETag (or the old body with the new),
    and an RP that cached that pair was answered 304 on its next conditional request: it kept a
    JWKS without the new key until the next change. Each line of the reload is paused at, and
    the pair read there."""
    import hashlib

    before, pairs = read_at_each_step_of_a_reload(app, lambda: keys.rotate(["ES256"]), lambda: keys.cached_jwks(app))
    after = keys.cached_jwks(app)
    assert after[0] != before[0], "the rotation published a key"
    mismatched = [(len(json.loads(body)["keys"]), etag) for body, etag in filter(None, pairs)
                  if hashlib.sha256(body).hexdigest()[:32] != etag]
    assert len(pairs) > 5 and not mismatched, f"JWKS bodies read with another body's ETag: {mismatched}"


@pytest.mark.parametrize("app_config", [{"SIGNING_KEY_RELOAD_SECONDS": 300}])
def test_the_key_that_signs_is_published_at_every_moment_of_an_emergency_rotations_reload(app, seeded, monkeypatch):
    """An emergency rotation revokes the signing key and makes a new one; the worker's ring is
    reloaded while its other threads sign without the ring's lock. The reload replaced the
    published keys, then the keys that sign, in separate stores: a token signed between the two
    took the revoked key, which the JWKS no longer held (and which the worker itself refused at
    once). Each bytecode instruction of the reload is paused at, and the signing key read there."""
    monkeypatch.setattr(keys.time, "sleep", lambda seconds: None)  # the rotation's wait for the other workers

    def signing():
        key = keys._current(keys._ring(), "ES256")
        return key.kid, keys.is_published(key.kid)

    before, signed = read_at_each_step_of_a_reload(app, lambda: keys.rotate(["ES256"], immediate=True), signing,
                                                  instructions=True)
    assert signed[-1][0] != before[0], "the rotation made a new signing key"
    unpublished = sorted({kid for kid, published in signed if not published})
    assert len(signed) > 50 and unpublished == [], f"signed with keys out of the JWKS: {unpublished}"
