"""Torque (4 to 6): qsub, one `qstat -x` (XML) for all of a cluster's jobs, qdel.

Torque keeps no job history a client can ask for: a finished job stays in qstat, in state C with
its exit_status, for the server's keep_completed seconds, then is gone (tracejob reads the
server's log files, on the server host, one job at a time). The accounting fallback therefore
asks qstat again, for the forgotten ids only; what it no longer knows has vanished."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from ..model import JobState, JobStatus
from .base import first_exec_host
from .pbs_common import LIVE_STATES, PBSFamily, ended_state, exit_code

#: qstat prints one XML document per job-id operand; with none, one for all jobs.
DOCUMENT = re.compile(r"<Data\b.*?(?:</Data>|<Data\s*/>)", re.DOTALL)


def _text(job: ET.Element, name: str) -> str:
    return (job.findtext(name) or "").strip()


def _status(job: ET.Element) -> JobStatus:
    raw = _text(job, "job_state")
    status_text = _text(job, "exit_status")
    status = int(status_text) if re.fullmatch(r"-?\d+", status_text) else None
    if raw == "C":
        # A job deleted before it ran completes without an exit status.
        state = ended_state(status, deleted=status is None)
    else:
        state = LIVE_STATES.get(raw, JobState.UNKNOWN)
    return JobStatus(
        job_id=_text(job, "Job_Id"),
        state=state,
        raw_state=raw,
        name=_text(job, "Job_Name"),
        user=_text(job, "Job_Owner").split("@", 1)[0],
        reason=_text(job, "comment"),
        exec_host=first_exec_host(_text(job, "exec_host")) if state is not JobState.PENDING else "",
        exit_code=exit_code(status),
    )


def _jobs(stdout: str) -> Iterator[JobStatus]:
    for document in DOCUMENT.findall(stdout):
        for job in ET.fromstring(document).iter("Job"):
            yield _status(job)


class Torque(PBSFamily):
    name = "torque"
    commands = {  # noqa: RUF012 - class-level data read by the base class
        "submit": ["qsub"],
        # Every job of every user, completed ones included while keep_completed lasts.
        "query": ["qstat", "-x"],
        "accounting": ["qstat", "-x", "{{ job_ids }}"],
        "cancel": ["qdel", "{{ job_ids }}"],
        "version": ["qstat", "--version"],
    }

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        return _jobs(stdout)

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        return _jobs(stdout)

    def parse_version(self, stdout: str) -> str:
        return (
            stdout.strip().splitlines()[0].removeprefix("Version:").strip()
            if stdout.strip()
            else ""
        )
