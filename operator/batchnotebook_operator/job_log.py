"""A failed job's log: where the scheduler wrote it, and its tail in the failure message."""

from __future__ import annotations

from batchnotebook_api.status import Phase

from .transition import Transition

# The job log's tail in a failure message: enough to show a traceback's end, bounded for the status.
LOG_TAIL_CHARACTERS = 2000


def needs_log_tail(status: dict, transition: Transition) -> bool:
    """A job that failed now: its log says why (a job that crashed at once may never have been
    seen running, so any active phase counts; a job that never ran leaves no log to read)."""
    was_active = not Phase(status.get("phase") or Phase.PENDING.value).terminal
    return was_active and transition.status.get("phase") == Phase.FAILED.value


def with_log_tail(transition: Transition, tail: str) -> Transition:
    """The failure message followed by the end of the job's log, bounded in length."""
    tail = tail.strip()
    if not tail:
        return transition
    if len(tail) > LOG_TAIL_CHARACTERS:
        tail = "…" + tail[-LOG_TAIL_CHARACTERS:]
    message = f"{transition.status['message']}; the job's log ends with:\n{tail}"
    return Transition({**transition.status, "message": message}, transition.events)


def job_output_path(output: str, job_id: str) -> str:
    """The job's log as the scheduler wrote it: `%j` is the job id, relative paths start in the
    user's home (where the transport runs commands as the user)."""
    return output.replace("%j", job_id)
