"""The scheduler-independent view of a job and of a notebook's lifecycle."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class JobState(enum.StrEnum):
    """What every scheduler's states map onto."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETING = "completing"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def ended(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


class Phase(enum.StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    STARTING = "Starting"
    READY = "Ready"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)


ENDED_PHASE = {
    JobState.FINISHED: Phase.COMPLETED,
    JobState.FAILED: Phase.FAILED,
    JobState.CANCELLED: Phase.CANCELLED,
}


@dataclass(frozen=True)
class JobStatus:
    """One job as the scheduler reported it."""

    job_id: str
    state: JobState
    raw_state: str = ""
    name: str = ""
    user: str = ""
    reason: str = ""
    exec_host: str = ""
    expected_start: dt.datetime | None = None
    exit_code: int | None = None
    ends_at: dt.datetime | None = None  # when the scheduler ends a running job (its walltime)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(when: dt.datetime | None = None) -> str:
    """RFC 3339 in UTC, as Kubernetes writes it."""
    return (when or now()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    conditions: list[dict],
    type_: str,
    status: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[dict]:
    """Return conditions with one set, keeping lastTransitionTime when the status is unchanged."""
    value = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed_at = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == value and previous.get("lastTransitionTime")
        else timestamp()
    )
    new = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": changed_at,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    if previous is None:
        return [*conditions, new]
    # In place: a list that only changes order would look changed and cost a write every poll.
    return [new if c is previous else c for c in conditions]
