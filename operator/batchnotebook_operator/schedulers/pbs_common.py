"""What PBS Pro and Torque share: qsub/qstat/qdel, one-letter job states, queues that are enabled
and started, nodes that are "free", and qstat's habit of answering for the jobs it knows while
complaining (and exiting non-zero) about the ones it does not."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model import JobState, PartitionLoad
from ..transports import CommandResult
from .base import Scheduler, total

#: Not an outage: qstat names jobs it does not know (any more) but still reports the others.
JOB_NOT_KNOWN = re.compile(r"Unknown Job Id|Job has finished", re.IGNORECASE)
#: How a job that qdel ended exits: its SIGTERM as PBS encodes a signal (256 + 15) or as the
#: job's own shell or launcher reports it (128 + 15), or the SIGKILL that follows when the job
#: ignores SIGTERM (256 + 9). A bare 128 + 9 is left a failure: the kernel's OOM killer sends it.
CANCELLED_STATUSES = (256 + 15, 128 + 15, 256 + 9)

LIVE_STATES = {
    "Q": JobState.PENDING,  # queued
    "H": JobState.PENDING,  # held
    "W": JobState.PENDING,  # waiting for its start time
    "T": JobState.PENDING,  # moving to another server
    "S": JobState.PENDING,  # suspended
    "U": JobState.PENDING,  # suspended for workstation activity
    "R": JobState.RUNNING,
    "B": JobState.RUNNING,  # array job begun
    "E": JobState.COMPLETING,  # exiting after having run
}
#: A node in this state takes new jobs; both list a node's states comma-separated (down,offline).
NODE_TAKES_JOBS = "free"


@dataclass(frozen=True)
class Node:
    """A node as pbsnodes reports it, in the terms a queue's load is counted in."""

    cpus: int
    gpus: int
    cpus_free: int  # of its CPUs, those no job holds
    gpus_free: int
    state: str  # pbsnodes' states, comma-separated: free, job-exclusive, down,offline...
    has_jobs: bool

    @property
    def takes_jobs(self) -> bool:
        return NODE_TAKES_JOBS in self.state.split(",")


@dataclass(frozen=True)
class QueueColumns:
    """Where a dialect's qstat -Q says that a queue is enabled and started, and how many of its
    jobs wait and run."""

    enabled: str
    started: str
    yes: str
    waiting: tuple[str, ...]
    running: tuple[str, ...]

    def state(self, queue: Mapping[str, object]) -> str:
        enabled, started = queue.get(self.enabled) == self.yes, queue.get(self.started) == self.yes
        if enabled and started:
            return "up"
        return "stopped" if enabled else "disabled"  # stopped: takes jobs, starts none


def queue_load(
    name: str,
    queue: Mapping[str, object],
    columns: QueueColumns,
    nodes: Sequence[Node],
    *,
    reports_gpus: bool,
) -> PartitionLoad:
    """A queue's load from its qstat -Q entry and the nodes that serve it; only a node that takes
    jobs has idle ones."""
    usable = [node for node in nodes if node.takes_jobs]
    return PartitionLoad(
        name=name,
        state=columns.state(queue),
        cpus_idle=sum(node.cpus_free for node in usable),
        cpus_total=sum(node.cpus for node in nodes),
        gpus_idle=sum(node.gpus_free for node in usable) if reports_gpus else None,
        gpus_total=sum(node.gpus for node in nodes) if reports_gpus else None,
        nodes_idle=sum(not node.has_jobs for node in usable),
        nodes_total=len(nodes),
        jobs_pending=total(queue, columns.waiting),
        jobs_running=total(queue, columns.running),
    )


def ended_state(status: int | None, *, deleted: bool) -> JobState:
    """How a finished PBS job ended, from whether it was deleted and its Exit_status (negative:
    the job could not run or was killed by the mom, e.g. for its walltime)."""
    if deleted or status in CANCELLED_STATUSES:
        return JobState.CANCELLED
    return JobState.FINISHED if status == 0 else JobState.FAILED


def first_job_id(stdout: str) -> str:
    """qsub prints the new job's id (`123.server`) on a line of its own."""
    for line in stdout.splitlines():
        if re.fullmatch(r"\d+(?:\[\d*\])?(?:\.\S+)?", line.strip()):
            return line.strip()
    raise ValueError(f"no job id in qsub output: {stdout!r}")


class PBSFamily(Scheduler):
    """Shared by PBS Pro and Torque; the subclasses hold the dialect (JSON or XML, commands)."""

    suspended_states = frozenset({"S", "U"})

    unavailable_patterns = (
        r"cannot connect to (?:the )?server",
        r"Cannot connect to (?:default|specified) server host",
        r"Unable to communicate with",
        r"Connection refused",
        r"Connection timed out",
        r"No route to host",
        r"Communication failure",
        r"could not connect to trqauthd",
        r"pbs_iff",
        r"End of File",
        r"Server shutting down",
        r"Resource temporarily unavailable",
    )

    def check(self, result: CommandResult, *, refusal: bool = False) -> str:
        """qstat exits 153/35 when some asked-for job is unknown or only in history, yet prints
        every job it knows: that is an answer, not an outage."""
        complaints = [line for line in result.stderr.splitlines() if line.strip()]
        if (
            result.returncode != 0
            and not refusal
            and complaints
            and all(JOB_NOT_KNOWN.search(line) for line in complaints)
        ):
            return result.stdout
        return super().check(result, refusal=refusal)

    def parse_submit(self, stdout: str) -> str:
        return first_job_id(stdout)
