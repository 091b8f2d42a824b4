"""What the machine is, what the server's workers hold in memory, and how busy everyone else is.

The benchmark shares its two cores with the server, wrk, and anything else running on the
machine. `CpuWatch` measures the last: CPU time the whole machine spent (/proc/stat) minus what
this process tree spent (its own and its waited-for children's times, plus the live
descendants such as gunicorn, plus PostgreSQL backends serving our database), as a number of
cores kept busy by others during a run. A run with much of it is marked noisy.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", cpuinfo, re.M)
    meminfo = _read("/proc/meminfo")
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    info = {
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "cpu_mhz": round(float(mhz[0])) if mhz else None,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _short_wrk(tool_version(["wrk", "--version"])),
    }
    for package in ("gunicorn", "flask", "authlib", "joserfc", "cryptography", "sqlalchemy", "argon2-cffi", "psycopg"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:
            info[package] = None
    return info


def compile_bytecode(root: Path) -> float:
    """Compile the app and its installed packages to bytecode before the server starts; the seconds it took.

    `pip install .` does this at install time, uv's editable install does not, and with
    PYTHONDONTWRITEBYTECODE set (as on some hosts) nothing is ever cached: each worker would then
    compile all of its ~1,000 modules from source at every start (2.4 s instead of 0.8 s to the
    first 200 on this machine) and keep the compiler's leftovers in its memory. The start-up and
    memory figures are meant for an installed server, so the benchmark compiles what is missing
    (compileall skips what is current).
    """
    import compileall
    import sysconfig

    began = time.perf_counter()
    for directory in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
        compileall.compile_dir(directory, quiet=2, workers=0)
    for package in ("identity", "api", "bench"):
        compileall.compile_dir(str(root / package), quiet=2, workers=0)
    compileall.compile_file(str(root / "app.py"), quiet=2)
    return time.perf_counter() - began


def _short_wrk(text: str | None) -> str | None:
    match = re.search(r"wrk\s+(?:debian/)?(\S+)", text or "")
    return f"wrk {match.group(1)}" if match else text


def tool_version(command: list[str]) -> str | None:
    if not shutil.which(command[0]):
        return None
    result = subprocess.run(command, capture_output=True, text=True)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0] if first else None


def git_state(root: Path) -> dict:
    def git(*args):
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty_files": len(dirty.splitlines()) if dirty else 0}


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, and its private memory (Private_Clean + Private_Dirty)."""
    status = _read(f"/proc/{pid}/status")
    out = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s*(\d+) kB", status, re.M)
        if match:
            out[key] = int(match.group(1))
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    private = sum(int(v) for v in re.findall(r"^Private_(?:Clean|Dirty):\s*(\d+) kB", rollup, re.M))
    if rollup:
        out["Private"] = private
    return out


# --- CPU used by others -------------------------------------------------------------


def _system_busy_ticks() -> int:
    fields = _read("/proc/stat").splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    # user nice system idle iowait irq softirq steal ...: busy = user + nice + system + steal. Interrupt and
    # softirq time are left out: during a run they are mostly our own loopback traffic, which no process is billed for.
    return values[0] + values[1] + values[2] + (values[7] if len(values) > 7 else 0)


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own ticks, waited-for children's ticks) of a process."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime 15, cutime 16, cstime 17
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ")


class CpuWatch:
    """Cores kept busy by processes other than ours between start() and stop()."""

    def __init__(self, database_name: str | None = None):
        self.root = os.getpid()
        self.database_name = database_name

    def _ours(self) -> int:
        return tree_ticks(self.root) + postgres_ticks(self.database_name)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _system_busy_ticks()
        self._ours0 = self._ours()

    def stop(self) -> float:
        wall = time.monotonic() - self._t0
        busy = _system_busy_ticks() - self._busy0
        ours = self._ours() - self._ours0
        if wall <= 0:
            return 0.0
        return max(0.0, (busy - ours) / TICKS / wall)


def tree_ticks(root: int) -> int:
    """CPU ticks of a process and its live descendants (and the children they have waited for)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                procs[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            total += procs[pid][1] + procs[pid][2]
        stack.extend(children.get(pid, []))
    return total


def postgres_backends(database_name: str | None) -> list[int]:
    """The process ids of the PostgreSQL backends connected to this database (on this machine)."""
    if not database_name:
        return []
    marker = f" {database_name} "
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and (cmd := _cmdline(int(entry))).startswith("postgres:") and marker in cmd + " "]


def postgres_ticks(database_name: str | None) -> int:
    """CPU ticks of the PostgreSQL backends connected to this database."""
    total = 0
    for pid in postgres_backends(database_name):
        stat = _stat(pid)
        if stat:
            total += stat[1]
    return total


def prioritize_backends(database_name: str | None, nice: int) -> int:
    """Give the backends serving this database the server's priority (--nice); how many there were.

    PostgreSQL puts every backend in a session, so a scheduler autogroup, of its own, at nice 0.
    With the server at -20 and both on two cores, a backend woken by a worker's statement waited
    on average 1.25 ms for a core (perf sched, sign-ins on PostgreSQL) while a worker hashed: the
    benchmark measured its own priority setting, not the server. The backends are set before each
    measured run, once the server's pools have opened them; they end with their connections."""
    count = 0
    for pid in postgres_backends(database_name):
        count += set_autogroup_nice(pid, nice)
    return count


class ServerCpu:
    """CPU milliseconds the server (gunicorn master and workers) and its database backends spent."""

    def __init__(self, root_pid: int | None, database_name: str | None = None):
        self.root = root_pid
        self.database_name = database_name

    def start(self) -> None:
        self._server0 = tree_ticks(self.root) if self.root else 0
        self._db0 = postgres_ticks(self.database_name)

    def stop(self) -> tuple[float, float]:
        server = (tree_ticks(self.root) if self.root else 0) - self._server0
        db = postgres_ticks(self.database_name) - self._db0
        return server * 1000 / TICKS, db * 1000 / TICKS


def wait_for_quiet(limit_seconds: float, threshold: float, database_name: str | None, log) -> float:
    """Wait (up to limit_seconds) until others use less than `threshold` cores over 1 s; return the last reading."""
    deadline = time.monotonic() + limit_seconds
    watch = CpuWatch(database_name)
    reading = 0.0
    warned = False
    while True:
        watch.start()
        time.sleep(1.0)
        reading = watch.stop()
        if reading < threshold or time.monotonic() >= deadline:
            return reading
        if not warned:
            log(f"  waiting for other processes to calm down ({reading:.2f} cores busy elsewhere)")
            warned = True


def autogroup_nice(pid: int) -> int | None:
    """The nice value of a process's autogroup (its session's, with sched_autogroup on), or None."""
    match = re.search(r"nice (-?\d+)", _read(f"/proc/{pid}/autogroup"))
    return int(match.group(1)) if match else None


def raise_priority(pid: int, nice: int) -> int | None:
    """Set the scheduling priority of a process's autogroup (Linux schedules sessions fairly against each
    other when sched_autogroup is on, so a process's own nice value does not count against other sessions).

    The autogroup is the whole session's, the shell the benchmark was started from included, and it
    outlives the benchmark: the caller restores the value this returns (the one before; None if the
    priority could not be set) with `set_autogroup_nice` when it is done. Left at -20, it once made
    every later command of that shell (a test suite among them) outrank the servers it started in
    sessions of their own."""
    before = autogroup_nice(pid)
    if before is None or not set_autogroup_nice(pid, nice):
        return None
    return before


def set_autogroup_nice(pid: int, nice: int) -> bool:
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return True
    except OSError:
        return False


def python_executable() -> str:
    return sys.executable
