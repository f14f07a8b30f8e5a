"""The scheduler-independent view of a job and of a notebook's lifecycle."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field, replace

from batchnotebook_api.status import Phase
from batchnotebook_api.times import now


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


ENDED_PHASE = {
    JobState.FINISHED: Phase.COMPLETED,
    JobState.FAILED: Phase.FAILED,
    JobState.CANCELLED: Phase.CANCELLED,
}


# How far a submission time may seem to precede its notebook's creation: the command-line tools
# print local time without a zone, and a login node's zone is not known here (up to a day off).
CLOCK_SKEW = dt.timedelta(hours=26)


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
    submitted_at: dt.datetime | None = None  # None: the scheduler's listing does not say
    # Stopped where it runs (PENDING as far as the state goes): its process keeps its port, so
    # unlike a requeued job it keeps its route.
    suspended: bool = False

    def owned_by(self, owner: str) -> bool:
        """Whether this job, known by the id recorded for a notebook, is still that notebook's:
        ids wrap around after years, so another owner's job under it is not (a scheduler that
        does not say whose a job is cannot tell)."""
        return self.user in ("", owner)

    def may_be_of(self, tag: str, owner: str, created: dt.datetime | None) -> bool:
        """Whether this job may be the one a notebook submitted, known only by its tag (after a
        crash between the submit and the status write): anyone can name a job `bnb-<uid>`, but
        only the notebook's own Unix user can own it, and not before the notebook existed."""
        if self.name != tag or not owner or self.user != owner:
            return False
        return (
            created is None
            or self.submitted_at is None
            or (self.submitted_at >= created - CLOCK_SKEW)
        )


@dataclass(frozen=True)
class PartitionLoad:
    """One partition (queue) as the scheduler reported it; None: the scheduler does not say."""

    name: str
    state: str
    cpus_idle: int | None = None
    cpus_total: int | None = None
    gpus_idle: int | None = None
    gpus_total: int | None = None
    nodes_idle: int | None = None
    nodes_total: int | None = None
    jobs_pending: int | None = None
    jobs_running: int | None = None

    def as_status(self) -> dict:
        """The BatchCluster status entry: what the scheduler did not report is left out."""
        fields = {
            "name": self.name,
            "state": self.state,
            "cpusIdle": self.cpus_idle,
            "cpusTotal": self.cpus_total,
            "gpusIdle": self.gpus_idle,
            "gpusTotal": self.gpus_total,
            "nodesIdle": self.nodes_idle,
            "nodesTotal": self.nodes_total,
            "jobsPending": self.jobs_pending,
            "jobsRunning": self.jobs_running,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class QueuedJob:
    """A job of every user's queue listing: what counts jobs and orders the pending ones."""

    job_id: str
    #: Where it may run; empty: any partition (a Grid Engine job that requested no queue).
    partitions: tuple[str, ...]
    pending: bool  # otherwise running


@dataclass(frozen=True)
class QueuePlace:
    """Where a pending job stands: position 1 starts next in `partition`."""

    partition: str
    position: int
    length: int


@dataclass(frozen=True)
class Availability:
    """One snapshot of a cluster: its partitions' resources and the order of its pending jobs."""

    taken_at: dt.datetime
    partitions: tuple[PartitionLoad, ...] = ()
    places: dict[str, QueuePlace] = field(default_factory=dict)  # by job id


def availability(
    partitions: list[PartitionLoad],
    jobs: list[QueuedJob] | None,
    taken_at: dt.datetime | None = None,
) -> Availability:
    """A snapshot from the partitions and every user's jobs, the pending ones in the order the
    scheduler would start them (None: no job listing). Counts the partitions' jobs where the
    partitions' own listing did not, and each pending job's place in its first partition."""
    names = [p.name for p in partitions]
    pending: dict[str, int] = dict.fromkeys(names, 0)
    running: dict[str, int] = dict.fromkeys(names, 0)
    positions: dict[str, tuple[str, int]] = {}  # job id -> (its first partition, position)
    for job in jobs or []:
        for name in job.partitions or names:
            if name not in pending:
                continue
            if not job.pending:
                running[name] += 1
                continue
            pending[name] += 1
            positions.setdefault(job.job_id, (name, pending[name]))
    places = {
        job_id: QueuePlace(name, position, pending[name])
        for job_id, (name, position) in positions.items()
    }
    if jobs is not None:
        partitions = [
            replace(
                p,
                jobs_pending=pending[p.name] if p.jobs_pending is None else p.jobs_pending,
                jobs_running=running[p.name] if p.jobs_running is None else p.jobs_running,
            )
            for p in partitions
        ]
    return Availability(taken_at or now(), tuple(partitions), places)
