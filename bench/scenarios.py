"""Results of a scenario: several measured runs, summarised by their medians."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Scenario:
    key: str  # "bare", "1", "2", "3", "4a", ...
    title: str
    runs: list = field(default_factory=list)  # wrk.RunResult or clients.FlowResult
    discarded: list = field(default_factory=list)  # runs set aside because other processes were busy
    warmup_errors: int = 0
    notes: list[str] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    unit: str = "req/s"
    reference: dict | None = None  # scenario 6: the pure hash rate it is held against
    connections: int | None = None  # scenario 8: wrk's connections

    @property
    def served_share(self) -> float | None:
        """Of the connections, the share that had a request in the server at an average moment
        (rate x mean latency / connections, Little's law; median of runs). wrk times only the
        requests that got an answer, so a connection the server never took up leaves no latency
        behind: a low share means connections were left waiting, whatever the percentiles say."""
        if not self.connections or not self.runs:
            return None
        return statistics.median([r.rps * r.mean_ms / 1000 / self.connections for r in self.runs])

    @property
    def rps(self) -> float:
        return statistics.median([r.rps for r in self.runs]) if self.runs else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median([r.p50_ms for r in self.runs]) if self.runs else 0.0

    @property
    def p99_ms(self) -> float:
        return statistics.median([r.p99_ms for r in self.runs]) if self.runs else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU (gunicorn and, on PostgreSQL, its backends) per request or operation, median of runs."""
        return statistics.median([r.server_cpu_per_op_ms for r in self.runs]) if self.runs else 0.0

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(getattr(r, "requests", getattr(r, "completed", 0)) for r in self.runs)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.runs) or (bool(self.checks) and not self.checks.get("ok", True))

    @property
    def max_noise(self) -> float:
        return max((r.noise_cores for r in self.runs), default=0.0)

    def as_dict(self, bare: "Scenario | None") -> dict:
        out = {
            "key": self.key, "title": self.title, "unit": self.unit,
            "median_rps": round(self.rps, 1), "median_p50_ms": round(self.p50_ms, 3),
            "median_p99_ms": round(self.p99_ms, 3), "server_cpu_ms_per_op": round(self.cpu_ms, 3), "errors": self.errors, "failed": self.failed,
            "warmup_errors": self.warmup_errors, "notes": self.notes, "checks": self.checks,
            "runs": [r.as_dict() if hasattr(r, "as_dict") else _flow_dict(r) for r in self.runs],
            "set_aside_noisy_runs": [r.as_dict() if hasattr(r, "as_dict") else _flow_dict(r) for r in self.discarded],
        }
        if bare is not None and bare.rps:
            out["ratio_rps_to_bare"] = round(self.rps / bare.rps, 3)
            out["ratio_p50_to_bare"] = round(self.p50_ms / bare.p50_ms, 2) if bare.p50_ms else None
            out["ratio_p99_to_bare"] = round(self.p99_ms / bare.p99_ms, 2) if bare.p99_ms else None
        if self.reference:
            out["reference"] = self.reference
        return out


def _flow_dict(result) -> dict:
    from dataclasses import asdict

    out = asdict(result)
    out["rps"] = result.rate
    return out
