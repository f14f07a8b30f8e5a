"""PBS Professional / OpenPBS (19+): qsub, one `qstat -f -F json` for all of a cluster's jobs,
and the server's job history (`qstat -x`) for the jobs that left the queue."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from ..model import JobState, JobStatus
from .base import first_exec_host
from .pbs_common import LIVE_STATES, PBSFamily, ended_state, exit_code

FINISHED_STATES = ("F", "X")  # finished; array subjob finished
#: substate of a finished job that was deleted (qdel) rather than ending by itself
SUBSTATE_TERMINATED = 91
JSON_FLAGS = ["-f", "-F", "json"]


def _when(text: Any) -> dt.datetime | None:
    """PBS prints times as ctime() strings in the server's local time; some attributes as epoch
    seconds."""
    if text in (None, "", 0, "0"):
        return None
    if isinstance(text, int | float) or str(text).isdigit():
        return dt.datetime.fromtimestamp(int(text), dt.UTC)
    try:
        return dt.datetime.strptime(
            " ".join(str(text).split()), "%a %b %d %H:%M:%S %Y"
        ).astimezone()
    except ValueError:
        return None


def _status(job_id: str, attributes: dict[str, Any]) -> JobStatus:
    raw = str(attributes.get("job_state", ""))
    status = attributes.get("Exit_status")
    status = int(status) if status not in (None, "") else None
    if raw in FINISHED_STATES:
        deleted = int(attributes.get("substate") or 0) == SUBSTATE_TERMINATED
        state = ended_state(status, deleted=deleted)
    else:
        state = LIVE_STATES.get(raw, JobState.UNKNOWN)
    estimated = attributes.get("estimated") or {}
    return JobStatus(
        job_id=job_id,
        state=state,
        raw_state=raw,
        name=str(attributes.get("Job_Name", "")),
        user=str(attributes.get("Job_Owner", "")).split("@", 1)[0],
        reason=str(attributes.get("comment", "")),
        exec_host=first_exec_host(str(attributes.get("exec_host", "")))
        if state is not JobState.PENDING
        else "",
        expected_start=_when(estimated.get("start_time")) if state is JobState.PENDING else None,
        exit_code=exit_code(status),
    )


def _jobs(stdout: str) -> Iterator[JobStatus]:
    if not stdout.strip():
        return
    # strict=False: values (Variable_List, comments) may carry raw control characters.
    document = json.loads(stdout, strict=False)
    for job_id, attributes in (document.get("Jobs") or {}).items():
        yield _status(job_id, attributes)


class PBSPro(PBSFamily):
    name = "pbspro"
    commands = {  # noqa: RUF012 - class-level data read by the base class
        "submit": ["qsub"],
        # Every queued and running job of every user; finished ones leave it for the history.
        "query": ["qstat", *JSON_FLAGS],
        # The history of the given jobs (or, to find a tag after a restart, of every job).
        "accounting": ["qstat", "-x", *JSON_FLAGS, "{{ job_ids }}"],
        "cancel": ["qdel", "{{ job_ids }}"],
        "version": ["qstat", "--version"],
    }
    no_accounting_patterns = (r"job_history_enable",)

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        return _jobs(stdout)

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        return _jobs(stdout)

    def parse_version(self, stdout: str) -> str:
        return stdout.strip().removeprefix("pbs_version =").strip()
