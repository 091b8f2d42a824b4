"""Password hashing with Argon2id at (at least) OWASP's minimum parameters."""

import os
import threading
from functools import lru_cache

from argon2 import PasswordHasher
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
    """

    def __init__(self, idle_seconds: float):
        self.idle_seconds = idle_seconds
        self._hashed = threading.Event()
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread runs (a fork does not copy threads)
        self._trim = None

    def hashed(self) -> None:
        """Note that a hash just ran (and start this process's thread on the first one)."""
        if self._pid != os.getpid():
            self._start()
        self._hashed.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._trim = _malloc_trim()
            self._hashed = threading.Event()  # not one a forked parent's thread may have been waiting on
            self._pid = os.getpid()
            if self._trim is not None:
                threading.Thread(target=self._run, name="argon2-memory-trim", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._hashed.wait()
            self._hashed.clear()
            while self._hashed.wait(self.idle_seconds):  # another hash within the idle time: wait again
                self._hashed.clear()
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


_DUMMY: dict[tuple, str] = {}


def spend_equal_time(password: str) -> None:
    """Verify against a dummy hash so an unknown user costs as much as a wrong password."""
    h = hasher()
    key = (h.time_cost, h.memory_cost, h.parallelism)
    if key not in _DUMMY:
        _DUMMY[key] = h.hash("dummy password for timing equality")
    verify_password(_DUMMY[key], password)
