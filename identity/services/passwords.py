"""Password hashing with Argon2id at (at least) OWASP's minimum parameters."""

import os
import threading
import time
from functools import lru_cache

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

TRIM_AFTER_IDLE_SECONDS = 1.0


class _IdleTrimmer:
    """Give Argon2's work area (19 MiB) back to the OS once no hash has run for a second.

    glibc keeps a freed block that size in the heap, so a worker that hashed once would carry
    it for good. Serving it from mmap instead returns it after every hash, but then each hash
    page-faults its memory in again (35% slower). Here one daemon thread per process waits until
    hashing pauses and then calls malloc_trim(0): under steady load nothing is trimmed, an idle
    worker shrinks. Without glibc's malloc_trim (musl, macOS, Windows) this does nothing.

    A hash only notes its time; the thread looks at it on its own clock (about once per idle
    period). Waking the thread on every hash cost a thread switch and a turn of the interpreter
    per hash: 1.5% of a worker's samples under a load of password changes.
    """

    def __init__(self, idle_seconds: float):
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread runs (a fork does not copy threads)
        self._trim = None
        self._last_hash: float | None = None  # a hash not trimmed after yet (time.monotonic()), or None

    def hashed(self) -> None:
        """Note that a hash just ran (and start this process's thread on the first one)."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._last_hash = time.monotonic()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._trim = _malloc_trim()
            self._pid = os.getpid()
            if self._trim is not None:
                threading.Thread(target=self._run, name="argon2-memory-trim", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                last = self._last_hash
                idle = None if last is None else time.monotonic() - last
                if idle is not None and idle >= self.idle_seconds:
                    self._last_hash = None
            if idle is None:
                time.sleep(self.idle_seconds)  # nothing hashed since the last trim
            elif idle < self.idle_seconds:
                time.sleep(self.idle_seconds - idle)
            else:
                self._trim(0)


def _malloc_trim():
    """glibc's malloc_trim, or None where there is none."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (ImportError, OSError, AttributeError):
        return None


_trimmer = _IdleTrimmer(TRIM_AFTER_IDLE_SECONDS)


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    """Return the hasher configured for this app."""
    cfg = current_app.config
    return _hasher(cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST_KIB"], cfg["ARGON2_PARALLELISM"])


def hash_password(password: str) -> str:
    try:
        return hasher().hash(password)
    finally:
        _trimmer.hashed()


def verify_password(password_hash: str, password: str) -> bool:
    """Check a password in constant time; False for a wrong password or an unreadable hash."""
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    finally:
        _trimmer.hashed()


def needs_rehash(password_hash: str) -> bool:
    try:
        return hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def costs_at_least_current(password_hash: str) -> bool:
    """Whether verifying this Argon2 hash costs at least a verification at the current settings
    (memory times passes); False for a hash that is not Argon2."""
    try:
        params = extract_parameters(password_hash)
    except (InvalidHashError, ValueError):
        return False
    current = hasher()
    return params.memory_cost * params.time_cost >= current.memory_cost * current.time_cost


_DUMMY: dict[tuple, str] = {}


def even_out_failure(hashes, password: str) -> None:
    """After `password` failed against `hashes`: one verification at the current cost, unless
    one of them cost that already. A hash keeps the cost it was made with, so after the ARGON2_*
    settings were raised a failure against an older hash (or a SHA-256 one, or none) took less
    time than an unknown name's dummy verification (spend_equal_time): the time told which user
    names or client ids exist."""
    if not any(costs_at_least_current(stored) for stored in hashes):
        spend_equal_time(password)


def verify_password_evenly(password_hash: str, password: str) -> bool:
    """verify_password, where a failure costs at least one verification at the current cost (a
    user's hash is rehashed at the cost only at their next sign-in): even_out_failure."""
    if verify_password(password_hash, password):
        return True
    even_out_failure([password_hash], password)
    return False


def spend_equal_time(password: str) -> None:
    """Verify against a dummy hash so an unknown user costs as much as a wrong password."""
    h = hasher()
    key = (h.time_cost, h.memory_cost, h.parallelism)
    if key not in _DUMMY:
        _DUMMY[key] = h.hash("dummy password for timing equality")
    verify_password(_DUMMY[key], password)
