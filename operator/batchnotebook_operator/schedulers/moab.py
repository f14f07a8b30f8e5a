"""Moab (over Torque or another resource manager): msub, one `showq --xml` for all of a
cluster's jobs (active, eligible and blocked), `showq -c --xml` for the jobs Moab remembers as
completed, mjobctl -c to cancel.

No availability snapshot yet: Moab's per-class resources come from `mdiag -c` / `showbf`, whose
output no emulator here prints and no fixture captures; rather than guess, the backend has no
"partitions" command and the snapshot reports no partitions (and no queue positions)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import ClassVar

from ..model import JobState, JobStatus
from .base import Commands, Scheduler, epoch, integer, shell_exit_code

STATES = {
    "Idle": JobState.PENDING,
    "Starting": JobState.PENDING,
    "Staging": JobState.PENDING,
    "Migrated": JobState.PENDING,
    "Deferred": JobState.PENDING,
    "Hold": JobState.PENDING,
    "UserHold": JobState.PENDING,
    "SystemHold": JobState.PENDING,
    "BatchHold": JobState.PENDING,
    "NotQueued": JobState.PENDING,
    "Suspended": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Canceling": JobState.COMPLETING,
    "Removed": JobState.CANCELLED,
    "Vacated": JobState.FAILED,
}
DOCUMENT = re.compile(r"<Data\b.*?</Data>", re.DOTALL)
CANCELLED_CODE = "CNCLD"


def _status(job: ET.Element, section: str) -> JobStatus:
    raw = job.get("State", "")
    code = job.get("CompletionCode", "")
    if raw == "Completed":
        state = (
            JobState.CANCELLED
            if code == CANCELLED_CODE
            else JobState.FINISHED
            if code in ("", "0")
            else JobState.FAILED
        )
    else:
        state = STATES.get(raw, JobState.UNKNOWN)
    pending = state is JobState.PENDING
    start = epoch(job.get("StartTime")) if pending else None
    return JobStatus(
        job_id=job.get("JobID", ""),
        state=state,
        raw_state=raw,
        name=job.get("JobName", ""),
        user=job.get("User", ""),
        # showq says why a job waits only by the section it lists it in.
        reason=(section if raw == "Idle" else f"{section}: {raw}") if pending else "",
        exec_host=job.get("MasterHost", "") if state is JobState.RUNNING else "",
        # An idle job with a reservation carries the reservation's start.
        expected_start=start,
        # Moab reports the resource manager's (Torque's) exit status.
        exit_code=shell_exit_code(integer(code)),
    )


class Moab(Scheduler):
    name = "moab"
    suspended_states = frozenset({"Suspended"})
    commands: ClassVar[Commands] = {
        "submit": ("msub",),
        "query": ("showq", "--xml"),
        "accounting": ("showq", "-c", "--xml"),
        "cancel": ("mjobctl", "-c", "{{ job_ids }}"),
        "version": ("showq", "--version"),
    }
    version_prefixes = ("Version:", "moab client")
    unavailable_patterns = (
        r"connection refused",
        r"no service listening",
        r"communication error",
        r"client timed out",
        r"cannot connect to",
        r"lost connection to server",
        r"server not responding",
    )

    def parse_submit(self, stdout: str) -> str:
        # msub prints the id after a blank line: `\n\n4761849\n`.
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        if not lines or not re.fullmatch(r"[\w.\-\[\]]+", lines[-1]):
            raise ValueError(f"no job id in msub output: {stdout!r}")
        return lines[-1]

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        for document in DOCUMENT.findall(stdout):
            for queue in ET.fromstring(document).iter("queue"):
                for job in queue.iter("job"):
                    yield _status(job, queue.get("option", ""))
