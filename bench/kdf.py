"""The pure password-hash rate: Argon2id with the app's parameters, in N processes, nothing else.

A sign-in verifies one password (one Argon2id computation); a password change verifies the
current password and hashes the new one (two). These rates are what scenario 6 is held
against: the rest of a sign-in (five HTTP requests, templates, CSRF, the database, signing)
should cost little next to the hash.
"""

from __future__ import annotations

import multiprocessing
import time

from argon2 import PasswordHasher

PASSWORD = "kdf-benchmark-password-123"


def _worker(kind: str, params: dict, start_at: float, duration: float, out) -> None:
    hasher = PasswordHasher(time_cost=params["time_cost"], memory_cost=params["memory_cost"],
                            parallelism=params["parallelism"])
    stored = hasher.hash(PASSWORD)
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + duration
    count = 0
    while time.time() < deadline:
        if kind == "verify":
            hasher.verify(stored, PASSWORD)
        elif kind == "hash":
            hasher.hash(PASSWORD)
        else:  # "change": verify the current password, hash the new one
            hasher.verify(stored, PASSWORD)
            hasher.hash(PASSWORD)
        count += 1
    out.put((count, time.time() - start_at))


def rate(kind: str, params: dict, *, processes: int, duration: float) -> float:
    """Operations per second over `processes` processes for `duration` seconds."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_worker, args=(kind, params, start_at, duration, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=duration + 120) for _ in procs]
    for p in procs:
        p.join(10)
    return sum(count / elapsed for count, elapsed in results)


def single_ms(params: dict, repeat: int = 10) -> float:
    """Milliseconds of one verification in one process, for the report."""
    hasher = PasswordHasher(time_cost=params["time_cost"], memory_cost=params["memory_cost"],
                            parallelism=params["parallelism"])
    stored = hasher.hash(PASSWORD)
    begin = time.perf_counter()
    for _ in range(repeat):
        hasher.verify(stored, PASSWORD)
    return (time.perf_counter() - begin) / repeat * 1000


def hash_for(password: str, params: dict) -> str:
    return PasswordHasher(time_cost=params["time_cost"], memory_cost=params["memory_cost"],
                          parallelism=params["parallelism"]).hash(password)
