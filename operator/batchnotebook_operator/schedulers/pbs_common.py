"""What PBS Pro and Torque share: qsub/qstat/qdel, one-letter job states, exit statuses above 256
meaning "killed by signal (status - 256)", and qstat's habit of answering for the jobs it knows
while complaining (and exiting non-zero) about the ones it does not."""

from __future__ import annotations

import re

from ..model import JobState
from ..transports import CommandResult
from .base import Scheduler

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


def exit_code(status: int | None) -> int | None:
    """A shell-style exit code (128 + signal for a killed job) from PBS's Exit_status."""
    if status is None:
        return None
    return 128 + status - 256 if status > 256 else status


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
