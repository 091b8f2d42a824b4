"""A test-owned PgBouncer in front of the test PostgreSQL database (tests/test_pooler_review.py).

`pgbouncer(database_uri, pool_mode=...)` starts one on a free loopback port, in the foreground
(its log on stderr, kept in a file), with its own ini and user list in a temporary directory,
and yields the database URI through it. Its server connections log in as the URI's role with
the URI's password; clients are trusted (loopback only). PgBouncer refuses to run as root: as
root it switches to the `postgres` user (.ci/run runs as root, and PostgreSQL's package made it).

Missing PgBouncer skips the tests on a developer's machine and fails them under CI=true
(.ci/run installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench.server import free_port


def pgbouncer_binary() -> str:
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is missing: .ci/run installs it (apt-get install pgbouncer)")
        pytest.skip("needs pgbouncer (apt-get install pgbouncer)")
    return binary


@contextmanager
def pgbouncer(database_uri: str, *, pool_mode: str = "transaction", pool_size: int = 1, extra: str = ""):
    """PgBouncer in `pool_mode` with `pool_size` server connections per database and user; yields
    an object with `.uri` (the database through it), `.admin(command)` (its console) and `.log()`."""
    binary = pgbouncer_binary()
    url = make_url(database_uri)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o755)
    (folder / "userlist.txt").write_text(f'"{url.username}" "{url.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host or '127.0.0.1'} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
        f"admin_users = {url.username}\n{extra}\n")
    for name in ("userlist.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    command = [binary]
    if os.geteuid() == 0:
        command += ["-u", pwd.getpwnam("postgres").pw_name]
    command.append(str(folder / "pgbouncer.ini"))
    log = open(folder / "pgbouncer.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not start:\n" + (folder / "pgbouncer.log").read_text()) from None
                time.sleep(0.05)
        yield _Bouncer(url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False), port, url, folder)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


class _Bouncer:
    def __init__(self, uri: str, port: int, url, folder: Path):
        self.uri, self.port, self._url, self._folder = uri, port, url, folder

    def admin(self, command: str) -> list:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self._url.username, dbname="pgbouncer",
                             autocommit=True) as connection:
            cursor = connection.execute(command)
            return cursor.fetchall() if cursor.description else []

    def log(self) -> str:
        return (self._folder / "pgbouncer.log").read_text(errors="replace")
