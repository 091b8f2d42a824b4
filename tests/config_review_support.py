"""Helpers of tests/test_config_review.py: a production server started with one bad variable."""

from __future__ import annotations

import subprocess
import sys

from bench.server import free_port, stop_process_group
from servers import GUNICORN_CONF, ROOT, granian_command, server_env


def start_with(kind: str, database_uri: str, extra: dict[str, str], *, wait: float = 20) -> tuple[int | None, str]:
    """Start gunicorn (with gunicorn.conf.py) or the granian launcher with `extra` in its environment
    and wait up to `wait` seconds for it to stop: (its exit code, or None if it was still running
    and has been stopped, and what it wrote)."""
    env = server_env(database_uri, extra={"PORT": str(free_port()), "WEB_CONCURRENCY": "1", **extra})
    command = ([sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)] if kind == "gunicorn"
               else granian_command())
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=wait)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        stop_process_group(process, 10)
        output, _ = process.communicate()
        return None, output
