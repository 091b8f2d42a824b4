"""Scenario 6a driven by wrk: whole sign-ins (authorize, login form, code, token) from Lua.

bench/lua/signin.lua runs one sign-in after another on each connection, as a new browser each
time, so the client costs a fraction of a millisecond of CPU per sign-in where the Python
driver (clients.sign_in_once, kept for checks and as --signin-driver python) cost 7.5 ms on the
cores the server needs. PKCE S256 needs SHA-256, which wrk's LuaJIT lacks: this module hands
the script a pool of verifier/challenge pairs.
"""

from __future__ import annotations

import resource
import time

from . import data
from .clients import FlowResult, pkce_pair
from .wrk import Wrk

PKCE_POOL = 64
STATUSES_EXPECTED = (200, 302, 303)  # 303: the login post's answer to the client


def script_args() -> list[str]:
    """The settings and PKCE pool signin.lua reads (after wrk's `--` and the thread count)."""
    args = [f"client={data.SIGNIN_CLIENT}", f"redirect_uri={data.SIGNIN_REDIRECT}", "scope=openid profile",
            f"password={data.USER_PASSWORD}", f"users={data.SIGNIN_USERS}", "user_prefix=bench-user-"]
    for _ in range(PKCE_POOL):
        verifier, challenge = pkce_pair()
        args.append(f"pkce={verifier}:{challenge}")
    return args


def _percentile_ms(histogram: dict[int, int], q: float) -> float:
    """The q-th percentile of a 1 ms histogram, as the middle of its bucket."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    rank = min(total - 1, max(0, int(round(q / 100 * (total - 1)))))
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen > rank:
            return ms + 0.5
    return max(histogram) + 0.5


def run(wrk: Wrk, url: str, *, connections: int, duration: float) -> FlowResult:
    """Sign in over `connections` connections (one wrk thread each) for `duration` seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    result = wrk.run(url + "/connect/authorize", duration=duration, script="signin", args=script_args(),
                     threads=connections, connections=connections)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counts = result.counts
    histogram = {int(k.split()[1]): v for k, v in counts.items() if k.startswith("ms ")}
    failures = {k[len("error "):]: v for k, v in counts.items() if k.startswith("error ")}
    unexpected = sum(v for k, v in result.statuses.items() if int(k) not in STATUSES_EXPECTED)
    # a wrong status is counted by the script too; only statuses it never saw would be extra
    errors = max(sum(failures.values()), unexpected) + sum(result.socket_errors.values())
    completed = counts.get("signins", 0)
    seconds = result.seconds or max(0.001, time.monotonic() - began)
    flow = FlowResult(
        completed=completed, seconds=seconds, rate=completed / seconds,
        p50_ms=_percentile_ms(histogram, 50), p99_ms=_percentile_ms(histogram, 99), errors=errors,
        error_samples=[f"{what}: {n}" for what, n in sorted(failures.items(), key=lambda kv: -kv[1])][:5]
        + [f"socket {what}: {n}" for what, n in result.socket_errors.items()],
        client_cpu_seconds=client_cpu,
    )
    flow.notes.append(f"wrk -t{connections} -c{connections}: {result.requests} requests, statuses {result.statuses}")
    return flow
