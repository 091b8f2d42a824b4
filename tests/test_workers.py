"""The pytest-xdist plumbing (tests/workers.py): Redis database numbers per worker, and the lock
that lets a serial test run alone while the other workers' tests share it."""

import threading
import time

import pytest

from workers import SerialLock, redis_database


@pytest.mark.parametrize(("url", "index", "expected"), [
    ("redis://127.0.0.1:6379/0", 0, "redis://127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379/0", 3, "redis://127.0.0.1:6379/3"),
    ("redis://127.0.0.1:6379/9", 2, "redis://127.0.0.1:6379/11"),
    ("redis://127.0.0.1:6379/15", 1, "redis://127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379", 1, "redis://127.0.0.1:6379/1"),
])
def test_each_worker_gets_a_redis_database_of_its_own(url, index, expected):
    assert redis_database(url, index) == expected


def _hold(lock, alone, entered, leave):
    with lock.held(alone=alone):
        entered.set()
        leave.wait(30)


def _start(lock, alone):
    entered, leave = threading.Event(), threading.Event()
    thread = threading.Thread(target=_hold, args=(lock, alone, entered, leave), daemon=True)
    thread.start()
    return thread, entered, leave


def test_shared_holders_run_together(tmp_path):
    lock = SerialLock(tmp_path)
    first = _start(lock, alone=False)
    second = _start(lock, alone=False)
    assert first[1].wait(10) and second[1].wait(10)
    for thread, _, leave in (first, second):
        leave.set()
        thread.join(10)


def test_a_serial_holder_waits_for_the_others_and_keeps_new_ones_out(tmp_path):
    lock = SerialLock(tmp_path)
    running, running_in, running_leave = _start(lock, alone=False)
    assert running_in.wait(10)

    serial, serial_in, serial_leave = _start(lock, alone=True)
    time.sleep(0.3)
    assert not serial_in.is_set(), "a serial test started while another test ran"

    late, late_in, late_leave = _start(lock, alone=False)
    time.sleep(0.3)
    assert not late_in.is_set(), "a test started while a serial one was waiting"

    running_leave.set()
    assert serial_in.wait(10), "the serial test did not start once the others finished"
    time.sleep(0.3)
    assert not late_in.is_set(), "a test started while a serial one ran"

    serial_leave.set()
    assert late_in.wait(10)
    late_leave.set()
    for thread in (running, serial, late):
        thread.join(10)
