"""The words of the status messages and Events the operator writes about a notebook: what a user
reads in the spawn page, `kubectl describe` and the hub's error. Pure; follow.py decides when."""

from __future__ import annotations

from batchnotebook_api.status import Phase
from batchnotebook_api.texts import duration_text

from .model import JobStatus


def queued(job: JobStatus, expected: str | None) -> str:
    return f"queued: {job.reason or 'waiting'}" + (
        f", expected to start {expected}" if expected else ""
    )


def suspended(job: JobStatus) -> str:
    return f"job {job.job_id} is suspended ({job.raw_state}), Jupyter waits"


def requeued(job: JobStatus) -> str:
    return (
        f"the scheduler put job {job.job_id} back in the queue ({job.raw_state}"
        + (f": {job.reason}" if job.reason else "")
        + "); the server is stopped, start a new one"
    )


def host_refused(job_id: str | None, host: str, reason: str) -> str:
    return (
        f"the scheduler says job {job_id} runs on {host}, which this cluster does not "
        f"allow ({reason}); not routing there"
    )


def ended(job: JobStatus, phase: Phase) -> str:
    detail = job.reason or job.raw_state
    message = {
        Phase.COMPLETED: f"the job ended ({detail})",
        Phase.CANCELLED: f"the job was cancelled ({detail})",
        Phase.FAILED: f"the job failed: {detail}",
    }[phase]
    if job.exit_code is not None:
        message += f", exit code {job.exit_code}"
    return message


def stopped_before_walltime(ends_at: str | None) -> str:
    return f"the server was stopped before its walltime ended ({ends_at})"


def walltime_ending(ends_at: str, seconds_left: float) -> str:
    return (
        f"the walltime ends at {ends_at} (in {duration_text(seconds_left)}): the server will be "
        "stopped shortly before, save your work"
    )


def queue_wait_exceeded(waited: float, scheduler_reason: str | None, allowed: float) -> str:
    return (
        f"waited {duration_text(waited)} in the queue"
        + (f" ({scheduler_reason})" if scheduler_reason else "")
        + f", the profile allows {duration_text(allowed)}; cancelled"
    )


def vanished(job_id: str, seconds_unseen: float) -> str:
    return (
        f"the scheduler no longer knows job {job_id} (not in the queue nor in accounting "
        f"for {int(seconds_unseen)} s)"
    )
