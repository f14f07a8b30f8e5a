"""What the operator tells Prometheus: how every scheduler command went and how long it took, how
long jobs wait in the queue, how long a spawn takes to be ready, how many notebooks are in each
phase per cluster, and how many cancels each cluster's backlog holds."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from batchnotebook_api.status import Phase
from batchnotebook_api.times import parse_timestamp

from .errors import SchedulerUnavailable

COMMANDS = Counter(
    "batchnotebook_scheduler_commands_total",
    "Scheduler commands run, by outcome",
    ["cluster", "command", "outcome"],
)
LATENCY = Histogram(
    "batchnotebook_scheduler_command_seconds",
    "Scheduler command latency",
    ["cluster", "command"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
QUEUE_WAIT = Histogram(
    "batchnotebook_queue_wait_seconds",
    "Time jobs waited in the scheduler's queue, from submission to running",
    ["cluster"],
    buckets=WAIT_BUCKETS,
)
TIME_TO_READY = Histogram(
    "batchnotebook_time_to_ready_seconds",
    "Time from the spawn request (the BatchNotebook's creation) to a reachable Jupyter server",
    ["cluster"],
    buckets=WAIT_BUCKETS,
)
NOTEBOOKS = Gauge("batchnotebook_notebooks", "BatchNotebooks by phase", ["cluster", "phase"])
PENDING_CANCELS = Gauge(
    "batchnotebook_pending_cancels",
    "Jobs of deleted notebooks the scheduler has not yet confirmed ended (status.pendingCancels)",
    ["cluster"],
)


@dataclass
class CommandOutcome:
    """Whether the scheduler accepted a command: only the block that read its answer knows."""

    ok: bool = False


@contextmanager
def scheduler_command(cluster: str, command: str) -> Iterator[CommandOutcome]:
    """Time the block and count it by outcome, the same for every client: "timeout" if it raised
    SchedulerUnavailable, else "ok" or "error" as the block set `ok`."""
    outcome = CommandOutcome()
    started = time.monotonic()
    try:
        yield outcome
    except SchedulerUnavailable:
        COMMANDS.labels(cluster, command, "timeout").inc()
        raise
    finally:
        LATENCY.labels(cluster, command).observe(time.monotonic() - started)
    COMMANDS.labels(cluster, command, "ok" if outcome.ok else "error").inc()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, (parse_timestamp(end) - parse_timestamp(start)).total_seconds())


def observe_status_change(cluster: str, created_at: str | None, before: dict, update: dict) -> None:
    """Record what a status update completes: a job that left the queue, a server now ready."""
    if update.get("startedAt") and not before.get("startedAt"):
        submitted = before.get("submittedAt") or update.get("submittedAt")
        waited = _seconds(submitted, update["startedAt"])
        if waited is not None:
            QUEUE_WAIT.labels(cluster).observe(waited)
    if update.get("phase") == Phase.READY.value and before.get("phase") != Phase.READY.value:
        took = _seconds(created_at, update.get("readyAt"))
        if took is not None:
            TIME_TO_READY.labels(cluster).observe(took)


def count_phases(cluster: str, notebooks: Iterable[dict]) -> None:
    counts = collections.Counter(
        n.get("status", {}).get("phase") or Phase.PENDING.value for n in notebooks
    )
    for phase in Phase:
        NOTEBOOKS.labels(cluster, phase.value).set(counts.get(phase.value, 0))


def count_pending_cancels(cluster: str, pending: int) -> None:
    PENDING_CANCELS.labels(cluster).set(pending)


def forget_cluster(cluster: str) -> None:
    for phase in Phase:
        with suppress(KeyError):  # never counted
            NOTEBOOKS.remove(cluster, phase.value)
    with suppress(KeyError):
        PENDING_CANCELS.remove(cluster)
