"""Drive load with wrk (Debian's package) and read its results.

Every script is bench/lua/report.lua followed by the scenario's own Lua (if any), so every run
reports its statuses and latency percentiles as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"


class WrkError(RuntimeError):
    pass


def ensure_wrk(log) -> str:
    """Return wrk's path, installing Debian's package when it is missing (as root)."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        raise WrkError("wrk is not installed: run `sudo apt-get install -y wrk` (Debian's package)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        log("  $ " + " ".join(command))
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise WrkError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    path = shutil.which("wrk")
    if not path:
        raise WrkError("apt-get installed wrk, but it is not on PATH")
    return path


@dataclass
class RunResult:
    """One measured run: throughput, latency, and everything that went wrong."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    errors: int
    noise_cores: float = 0.0
    server_cpu_ms: float = 0.0  # CPU the gunicorn processes spent during the run
    db_cpu_ms: float = 0.0  # CPU the PostgreSQL backends serving them spent
    counts: dict[str, int] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.errors > 0

    @property
    def server_cpu_per_op_ms(self) -> float:
        return (self.server_cpu_ms + self.db_cpu_ms) / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("left")
        return out


def count_errors(statuses: dict[str, int], socket_errors: dict[str, int], expected: tuple[int, ...] | None = None) -> int:
    """Every response outside 2xx (or outside `expected`) and every socket error or timeout."""
    bad = 0
    for status, count in statuses.items():
        code = int(status)
        ok = code in expected if expected else 200 <= code < 300
        if not ok:
            bad += count
    return bad + sum(socket_errors.values())


class Wrk:
    def __init__(self, binary: str, workdir: Path, *, threads: int, connections: int, timeout_s: float = 10):
        self.binary = binary
        self.workdir = workdir
        self.threads = threads
        self.connections = connections
        self.timeout_s = timeout_s
        self._scripts: dict[str, Path] = {}

    def script(self, name: str | None) -> Path:
        """report.lua, followed by lua/NAME.lua when given, written once into the work directory."""
        key = name or "report"
        if key not in self._scripts:
            text = (LUA_DIR / "report.lua").read_text()
            if name:
                text += "\n-- " + name + ".lua\n" + (LUA_DIR / f"{name}.lua").read_text()
            path = self.workdir / f"wrk-{key}.lua"
            path.write_text(text)
            self._scripts[key] = path
        return self._scripts[key]

    def run(self, url: str, *, duration: float, script: str | None = None, headers: dict[str, str] | None = None,
            body: str | None = None, args: list[str] | None = None, threads: int | None = None,
            connections: int | None = None) -> RunResult:
        threads = threads or self.threads
        connections = connections or self.connections
        threads = min(threads, connections)
        command = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
                   f"--timeout={self.timeout_s:g}s", "-s", str(self.script(script))]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        command.append(url)
        if args:
            command += ["--", str(threads), *args]
        env = dict(os.environ)
        if body is not None:
            env["WRK_BODY"] = body
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 120)
        line = next((l for l in result.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
        if result.returncode != 0 or line is None:
            raise WrkError(f"wrk exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        data = json.loads(line[len("BENCH_JSON "):])
        seconds = data["duration_us"] / 1e6
        statuses = {k: int(v) for k, v in data["statuses"].items()}
        socket_errors = {k: int(v) for k, v in data["socket_errors"].items() if v}
        return RunResult(
            requests=data["requests"], seconds=seconds, rps=data["requests"] / seconds if seconds else 0.0,
            p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
            mean_ms=data["mean_us"] / 1000, max_ms=data["max_us"] / 1000, statuses=statuses,
            socket_errors=socket_errors, errors=count_errors(statuses, socket_errors),
            counts={k: int(v) for k, v in data.get("counts", {}).items()}, left=list(data.get("left", [])),
        )


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-wrk-"))
