"""Helpers of test_twice_review.py: the same request, or operator command, sent twice at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from servers import ROOT, _empty, flask_cli, migrate, run_together, server_env

DEMO_SEED = ROOT / "demo" / "seed.json"


def migrated_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an operator's commands on a migrated database: the suite's PostgreSQL
    database (emptied first) or a SQLite file in `tmp_path`."""
    uri = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI")
    if uri and uri.startswith("postgresql"):
        _empty(uri)
    else:
        uri = "sqlite:///" + str(tmp_path / "twice.db")
    env = server_env(uri)
    # `clients disable` and `clients remove` wait out the workers' client cache before they return
    # (docs/configuration.md): no server runs here, and the wait only made each case 5 s longer
    env["FLASK_CLIENT_CACHE_SECONDS"] = "0"
    migrate(env)
    return env


def operator_env(tmp_path: Path) -> dict[str, str]:
    """migrated_env, seeded with the demo seed."""
    env = migrated_env(tmp_path)
    flask_cli(["seed", str(DEMO_SEED)], env)
    return env


def cli(args: list[str], env: dict[str, str], *, input: str | None = None) -> subprocess.CompletedProcess:
    """One operator command (any exit code)."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          input=input, capture_output=True, text=True, timeout=120)


def cli_twice(args: list[str], env: dict[str, str], *, input: str | None = None) -> list[subprocess.CompletedProcess]:
    """The same operator command run twice at the same moment (two terminals, a script retried)."""
    results = run_together(lambda: cli(args, env, input=input), lambda: cli(args, env, input=input))
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def scalar(env: dict[str, str], sql: str, **params):
    engine = create_engine(env["FLASK_SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.begin() as connection:  # committed: a DELETE too
            return connection.scalar(text(sql), params)
    finally:
        engine.dispose()
