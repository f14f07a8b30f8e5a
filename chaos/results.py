"""A campaign's results: per fault kind, how many were injected and recovered, how long the
system took to be healthy again (p50, p99), and the invariant violations found while that kind
was the last fault injected. Written as Markdown (results.md) and JSON (results.json)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .invariants import Violation
from .schedule import KINDS, Fault


@dataclass(frozen=True)
class Outcome:
    """One fault as it happened: epoch seconds, None for what did not happen."""

    fault: Fault
    injected_at: float | None = None
    restarted_at: float | None = None  # the component's restart began
    healthy_at: float | None = None  # the whole system answered as before
    error: str | None = None

    @property
    def recovery(self) -> float | None:
        """Seconds from the restart's beginning until the system was healthy again."""
        if self.restarted_at is None or self.healthy_at is None:
            return None
        return self.healthy_at - self.restarted_at

    @property
    def outage(self) -> float | None:
        """Seconds from the fault until the system was healthy again: for the operator, the
        failover (the standby takes over while the killed replica is still down)."""
        if self.injected_at is None or self.healthy_at is None:
            return None
        return self.healthy_at - self.injected_at


@dataclass(frozen=True)
class Row:
    kind: str
    injected: int
    recovered: int
    p50: float | None
    p99: float | None
    violations: int
    outage_p50: float | None = None
    outage_p99: float | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def blame(violation: Violation, outcomes: Sequence[Outcome]) -> str:
    """The kind of the last fault injected before the violation was seen ("none" before any)."""
    before = [o for o in outcomes if o.injected_at is not None and o.injected_at <= violation.at]
    return max(before, key=lambda o: o.injected_at or 0).fault.kind if before else "none"


def table(outcomes: Sequence[Outcome], violations: Sequence[Violation]) -> list[Row]:
    blamed = [blame(v, outcomes) for v in violations]
    rows = []
    kinds = [k for k in KINDS if any(o.fault.kind == k for o in outcomes)]
    for kind in [*kinds, *(["none"] if "none" in blamed else [])]:
        mine = [o for o in outcomes if o.fault.kind == kind]
        times = [r for o in mine if (r := o.recovery) is not None]
        outages = [r for o in mine if (r := o.outage) is not None]
        rows.append(
            Row(
                kind,
                injected=sum(1 for o in mine if o.injected_at is not None),
                recovered=len(times),
                p50=percentile(times, 50),
                p99=percentile(times, 99),
                violations=blamed.count(kind),
                outage_p50=percentile(outages, 50),
                outage_p99=percentile(outages, 99),
            )
        )
    return rows


def markdown(rows: Sequence[Row], header: str) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    lines = [
        header,
        "",
        "| fault | injected | recovered | recovery p50 | recovery p99 | outage p50 | outage p99 "
        "| violations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.kind} | {r.injected} | {r.recovered} | {seconds(r.p50)} | {seconds(r.p99)} "
            f"| {seconds(r.outage_p50)} | {seconds(r.outage_p99)} | {r.violations} |"
        )
    total = [sum(getattr(r, f) for r in rows) for f in ("injected", "recovered", "violations")]
    lines.append(f"| **all** | {total[0]} | {total[1]} | | | | | {total[2]} |")
    return "\n".join(lines) + "\n"


def write(
    directory: Path,
    header: str,
    outcomes: Sequence[Outcome],
    violations: Sequence[Violation],
    extra: dict,
) -> list[Row]:
    """results.md (the table under `header`) and results.json (everything) in `directory`."""
    rows = table(outcomes, violations)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.md").write_text(markdown(rows, header))
    raw = {
        **extra,
        "rows": [asdict(r) for r in rows],
        "outcomes": [{**asdict(o), "recovery": o.recovery, "outage": o.outage} for o in outcomes],
        "violations": [asdict(v) for v in violations],
    }
    (directory / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    return rows
