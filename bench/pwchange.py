"""Scenario 6b driven by wrk: password changes from Lua, one prepared bearer token each.

bench/lua/pwchange.lua posts one change after another on each connection. The Python driver
(clients.change_password_once, kept as --password-driver python) cost 1.5-1.6 ms of client CPU
a change on the two cores the server needs, about 2.5% of a change's whole cost; wrk costs a
fraction of that. The tokens go to the script in a file (a change revokes its token, so each
is used once).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from .clients import FlowResult
from .signin import _percentile_ms
from .wrk import Wrk

STATUSES_EXPECTED = (204,)


def write_items(workdir: Path, items: list[tuple[str, str]], name: str) -> Path:
    """The tokens file pwchange.lua reads: one "TOKEN PASSWORD" line per change."""
    path = workdir / f"pwchange-{name}.txt"
    path.write_text("".join(f"{token} {password}\n" for token, password in items))
    return path


def run(wrk: Wrk, url: str, items_file: Path, *, connections: int, duration: float) -> FlowResult:
    """Change passwords over `connections` connections (one wrk thread each) for `duration` seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    result = wrk.run(url + "/localapi/password", duration=duration, script="pwchange", args=[str(items_file)],
                     threads=connections, connections=connections)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counts = result.counts
    histogram = {int(k.split()[1]): v for k, v in counts.items() if k.startswith("ms ")}
    failures = {k[len("error "):]: v for k, v in counts.items() if k.startswith("error ")}
    exhausted = counts.get("exhausted", 0)
    errors = sum(failures.values()) + sum(result.socket_errors.values())
    completed = counts.get("changes", 0)
    seconds = result.seconds or max(0.001, time.monotonic() - began)
    flow = FlowResult(
        completed=completed, seconds=seconds, rate=completed / seconds,
        p50_ms=_percentile_ms(histogram, 50), p99_ms=_percentile_ms(histogram, 99), errors=errors,
        error_samples=[f"status {what}: {n}" for what, n in sorted(failures.items(), key=lambda kv: -kv[1])][:5]
        + [f"socket {what}: {n}" for what, n in result.socket_errors.items()],
        client_cpu_seconds=client_cpu, exhausted=exhausted > 0,
    )
    flow.notes.append(f"wrk -t{connections} -c{connections}: {result.requests} requests, statuses {result.statuses}")
    if exhausted:
        flow.notes.append(f"ran out of prepared tokens: {exhausted} requests to /healthz instead")
    return flow
