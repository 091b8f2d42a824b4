"""A server that runs for a long time: what accumulates, what drifts (the tenth review, from outside).

Each test drives a real server, or the app with its clock moved on, through what a year of normal
use does many times over, and checks that what piles up is bounded and what is counted stays right.
"""

import glob
import time

import pytest
import requests

from servers import GunicornServer

from test_metrics import scraped


# --- the metrics directory across worker recycles ---------------------------------------------------


@pytest.mark.server
@pytest.mark.database_independent
def test_recycled_workers_leave_no_metrics_files_behind_and_keep_their_counts(tmp_path):
    """GUNICORN_MAX_REQUESTS recycles a worker every 100,000 requests or so: over a year, thousands of
    times. Each worker wrote its counter_<pid>.db and histogram_<pid>.db; they must not pile up (every
    scrape reads every file: measured, 1.4 s per thousand dead workers, and 70 MB of files), and the
    counts of the dead workers must stay in the totals."""
    directory = tmp_path / "metrics"
    uri = "sqlite:///" + str(tmp_path / "recycled.db")
    server = GunicornServer(uri, workers=1, name="recycled", log_dir=tmp_path,
                            env={"PROMETHEUS_MULTIPROC_DIR": str(directory),
                                 "GUNICORN_MAX_REQUESTS": "8", "GUNICORN_MAX_REQUESTS_JITTER": "0"})
    requests_made = 48
    with server:
        pids = set(server.worker_pids())
        for _ in range(requests_made):
            for attempt in range(50):  # a recycle closes the connection the request came on
                try:
                    response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            assert response.status_code == 200
            pids |= server.worker_pids()
        server.wait_for_workers(1)
        assert len(pids) >= 5, f"the worker was not recycled: {sorted(pids)}\n{server.log()}"
        files = sorted(p.rpartition("/")[2] for p in glob.glob(str(directory / "*.db")))
        text = requests.get(server.url + "/metrics", timeout=10).text
        count = scraped(text, "identity_request_duration_seconds_count", endpoint="discovery.openid_configuration")
        assert count == requests_made, text
        # the live worker's two files, and at most one file of each kind for every worker gone before it
        assert len(files) <= 4, f"{len(pids)} workers left {len(files)} metrics files: {files}"


# --- counters that outgrow their column ---------------------------------------------------------------


from sqlalchemy import select  # noqa: E402

from identity.extensions import db  # noqa: E402
from identity.models import Passkey  # noqa: E402
from test_passkeys import alice, ctx, register, sign_in  # noqa: E402,F401  (fixtures and helpers)
from webauthn_keys import SoftKey  # noqa: E402


def test_a_passkey_whose_use_counter_passes_two_to_the_31_keeps_signing_in(alice):
    """WebAuthn's signCount is an unsigned 32-bit number (an authenticator with one global counter, used
    for years across sites, or one that starts high): a count above 2**31 - 1 must still be stored, at
    registration and at each use, on PostgreSQL too (whose INTEGER stops there)."""
    key = SoftKey(sign_count=2**31 - 1)
    passkey_id = register(alice, key).id
    use, _ = sign_in(key)  # 2**31
    assert use.user_id == alice
    db.session.expire_all()
    assert db.session.scalar(select(Passkey.sign_count).where(Passkey.id == passkey_id)) == 2**31
    high = SoftKey(sign_count=2**32 - 2)
    high_id = register(alice, high).id
    assert sign_in(high)[0].user_id == alice  # 2**32 - 1, the largest count there is
    db.session.expire_all()
    assert db.session.scalar(select(Passkey.sign_count).where(Passkey.id == high_id)) == 2**32 - 1


from app import create_app  # noqa: E402
from conftest import make_config  # noqa: E402
from flask_migrate import downgrade, upgrade  # noqa: E402
from test_migration_sessions import _migrate, _rows, _run, scratch_uri  # noqa: E402,F401  (a fixture and helpers)


def test_the_sign_count_migration_keeps_counts_and_its_downgrade_caps_them(scratch_uri):
    """38e0f4b30e8c: sign_count becomes BIGINT (a count above 2**31 - 1 is stored); the downgrade
    lowers such counts to 2**31 - 1 before the column is INTEGER again."""
    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, "b8d4f1a6c3e9")
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, password_hash, password_version, "
              "password_changed_at, failed_attempts, locked_until, created_at) VALUES (7, 's', 'bob', 'bob', 'x', 1, 0, 0, 0, 0)")
    insert = ("INSERT INTO passkeys (user_id, credential_id, public_key, sign_count, transports, backup_eligible, aaguid, "
              "name, created_at) VALUES (7, :cid, :pk, :count, '', false, '', 'key', 0)")
    _run(app, insert, cid="low", pk=b"k", count=41)
    _migrate(app, upgrade, "38e0f4b30e8c")
    _run(app, insert, cid="high", pk=b"k", count=2**32 - 1)
    assert sorted(_rows(app, "SELECT credential_id, sign_count FROM passkeys")) == [("high", 2**32 - 1), ("low", 41)]
    _migrate(app, downgrade, "b8d4f1a6c3e9")
    assert sorted(_rows(app, "SELECT credential_id, sign_count FROM passkeys")) == [("high", 2**31 - 1), ("low", 41)]
    _migrate(app, upgrade, "38e0f4b30e8c")
    assert sorted(_rows(app, "SELECT credential_id, sign_count FROM passkeys")) == [("high", 2**31 - 1), ("low", 41)]
    with app.app_context():
        db.engine.dispose()


# --- row ids: what a request adds, a row each time, over a server's life ---------------------------------------


import os  # noqa: E402

from sqlalchemy import text  # noqa: E402

from actions import AuthActions, OAuthActions  # noqa: E402
from test_upgrade_review import password_grant, refresh  # noqa: E402

_ON_POSTGRES = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "").startswith("postgresql")
_INT4_MAX = 2**31 - 1


@pytest.mark.postgres
@pytest.mark.skipif(not _ON_POSTGRES, reason="PostgreSQL's serial ids (SQLite's rowid is 64 bits)")
def test_ids_of_codes_refresh_tokens_and_audit_events_do_not_run_out(app, client, flow_clients):
    """Every refresh adds a refresh_tokens row, every authorization a code, every sign-in an audit
    event; the purge removes the rows but their ids are never given again. At 68 refreshes a second
    (the benchmark refreshes 1,188/s), a year uses 2**31 ids: the sequence stands here at what that
    left, and the next refresh, code and sign-in must still work."""
    with app.app_context():
        for table in ("refresh_tokens", "authorization_codes", "audit_events"):
            db.session.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :at)"),
                               {"t": table, "at": _INT4_MAX - 1})
        db.session.commit()
    grant = password_grant(client)  # a refresh token with id 2**31 - 1
    for _ in range(2):
        response = refresh(client, grant["refresh_token"])
        assert response.status_code == 200, response.get_data(as_text=True)
        grant = response.get_json()
    assert AuthActions(client).login().status_code == 302
    for _ in range(2):
        token, _params = OAuthActions(client).code_flow(client_id="spa")
        assert token.status_code == 200, token.get_data(as_text=True)
    with app.app_context():
        for table in ("refresh_tokens", "authorization_codes", "audit_events"):
            assert db.session.scalar(text(f"SELECT max(id) FROM {table}")) > _INT4_MAX, table


def test_the_row_id_migration_goes_both_ways(scratch_uri):
    """5c5208cca771: on PostgreSQL the growing tables' ids and their sequences become bigint, and
    the downgrade makes them integer again; on SQLite (64-bit rowids already) it changes nothing."""
    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, "38e0f4b30e8c")
    _run(app, "INSERT INTO audit_events (at, event, detail) VALUES (1, 'before', '{}')")
    types = ("SELECT c.data_type, s.data_type FROM information_schema.columns c "
             "JOIN information_schema.sequences s ON s.sequence_name = 'refresh_tokens_id_seq' "
             "AND s.sequence_schema = c.table_schema "
             "WHERE c.table_name = 'refresh_tokens' AND c.column_name = 'id' AND c.table_schema = current_schema()")
    _migrate(app, upgrade, "5c5208cca771")
    _run(app, "INSERT INTO audit_events (at, event, detail) VALUES (2, 'after', '{}')")
    assert [event for (event,) in _rows(app, "SELECT event FROM audit_events ORDER BY id")] == ["before", "after"]
    if _ON_POSTGRES:
        assert _rows(app, types) == [("bigint", "bigint")]
    _migrate(app, downgrade, "38e0f4b30e8c")
    if _ON_POSTGRES:
        assert _rows(app, types) == [("integer", "integer")]
    _run(app, "INSERT INTO audit_events (at, event, detail) VALUES (3, 'back', '{}')")
    assert len(_rows(app, "SELECT id FROM audit_events")) == 3
    _migrate(app, upgrade, "5c5208cca771")
    with app.app_context():
        db.engine.dispose()


# --- the automatic purge keeps up with what a busy server adds ------------------------------------------


from identity.clock import now  # noqa: E402
from identity.models import RefreshToken, User  # noqa: E402
from test_purge import _count, _refresh  # noqa: E402


def _purge_layer(app):
    """The app's PurgeAfterResponses layer, found down the chain of WSGI layers."""
    from identity.services.purge import PurgeAfterResponses
    layer = app.wsgi_app
    while not isinstance(layer, PurgeAfterResponses):
        layer = getattr(layer, "wsgi_app", None) or layer.app
    return layer


@pytest.mark.parametrize("app_config", [{"PURGE_INTERVAL_SECONDS": 3600, "PURGE_BATCH_SIZE": 5}])
def test_the_automatic_purge_drains_a_backlog_bigger_than_a_batch_while_requests_come(app, seeded):
    """One bounded pass per PURGE_INTERVAL_SECONDS removes at most PURGE_BATCH_SIZE rows of a kind: by
    default 500 every 300 s, 1.7 rows a second per worker. A server that adds more than that (a refresh
    token per refresh: 5 refreshes a second on two workers) grew its tables for ever unless an operator
    also ran `flask purge` from cron. A pass that found a full batch must come back soon, still bounded.

    The interval is an hour and the first pass is made due now: one pass an interval stops at 35 rows
    left for the rest of the test. The test waits on progress, not on a clock: a pass that takes long
    on a busy disk (nine commits) only slows it down, while no change for 8 s fails it. The requests go
    through the WSGI stack in this thread, and each response is closed before the next: over a socket,
    werkzeug's development server skips a response's close when the client's socket is reset first,
    and a pass claimed by that response never came (one pass missed an interval: an hour here)."""
    t = now()
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.add_all([_refresh(f"expired-{i}", alice, expires_at=t - 10 - i) for i in range(40)])
        db.session.commit()
    _purge_layer(app).next_due = 0.0
    counts = [_count(app, RefreshToken)]
    last_change = time.monotonic()
    client = app.test_client()
    while counts[-1] and time.monotonic() - last_change < 8:
        response = client.get("/.well-known/openid-configuration", buffered=True)  # closed: the pass has run
        assert response.status_code == 200
        time.sleep(0.2)
        count = _count(app, RefreshToken)
        if count != counts[-1]:
            counts.append(count)
            last_change = time.monotonic()
    assert counts[-1] == 0, f"{counts[-1]} of 40 due refresh tokens left, nothing removed for 8 s: {counts}"
    assert all(0 < a - b <= 5 for a, b in zip(counts, counts[1:])), counts  # each pass still bounded


# --- operator commands run with the service's environment (cron) ---------------------------------------------


from servers import password_grant_seed, seeded_server  # noqa: E402


@pytest.mark.server
@pytest.mark.database_independent
def test_commands_run_with_the_metrics_directory_leave_no_file_each_and_keep_their_counts(tmp_path):
    """`flask purge` from cron, every few minutes, with the service's environment (PROMETHEUS_MULTIPROC_DIR
    included, so `users set-password` counts in the `cli` channel): each run left its counter_<pid>.db
    in the directory for the life of the instance, and every scrape read them all."""
    directory = tmp_path / "metrics"
    seed = password_grant_seed("cron", "cron-secret-0123456789", "carl", "tulip-quartz-harbor-917")
    with seeded_server(tmp_path, seed, name="cron", env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}) as server:
        for _ in range(6):
            server.cli(["purge", "--json"])
        server.cli(["users", "set-password", "carl"], input="another-tulip-harbor-5150\n")
        files = sorted(p.rpartition("/")[2] for p in glob.glob(str(directory / "*.db")))
        workers = server.worker_pids()
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert scraped(text, "identity_password_changes_total", channel="cli") == 1, text
        strangers = [f for f in files if not any(f.endswith(f"_{pid}.db") for pid in (*workers, 0))]
        assert strangers == [], f"8 commands left {len(strangers)} metrics files: {strangers}"


@pytest.mark.server
@pytest.mark.database_independent
def test_granian_workers_recycled_leave_no_metrics_files_behind(tmp_path):
    """granian's recycling (--workers-max-rss, --workers-lifetime) ends a worker through
    multiprocessing's exit: its files must be folded into the gone workers' as gunicorn's are."""
    from servers import GranianServer

    directory = tmp_path / "metrics"
    uri = "sqlite:///" + str(tmp_path / "granian.db")
    server = GranianServer(uri, workers=1, name="granian-recycled", log_dir=tmp_path,
                           env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
                           args=["--workers-max-rss", "1", "--rss-sample-interval", "1"])
    with server:
        pids, served = set(server.worker_pids()), 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 4:
            try:
                if requests.get(server.url + "/.well-known/openid-configuration", timeout=10).status_code == 200:
                    served += 1
            except requests.ConnectionError:
                pass
            pids |= server.worker_pids()
            time.sleep(0.1)
        assert len(pids) >= 4, f"the worker was not recycled: {sorted(pids)}"
        # the worker is recycled every second (its RSS is always past 1 MiB), so at any instant one may
        # be exiting, its files not folded yet: look until an instant when no file names a gone worker
        # (files left behind for good would never pass)
        deadline = time.monotonic() + 30
        while True:
            live = server.worker_pids()
            files = sorted(p.rpartition("/")[2] for p in glob.glob(str(directory / "*.db")))
            strangers = [f for f in files if not any(f.endswith(f"_{pid}.db") for pid in (*live, 0))]
            if not strangers or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert strangers == [], f"{len(pids)} workers left {len(strangers)} metrics files: {strangers}"
        text = requests.get(server.url + "/metrics", timeout=10).text
        counted = scraped(text, "identity_request_duration_seconds_count", endpoint="discovery.openid_configuration")
        assert served <= counted <= served + 2, (served, counted)  # kept (a response lost to a recycle may count)
