"""PBS Professional / OpenPBS (19+): qsub, one `qstat -f -F json` for all of a cluster's jobs,
and the server's job history (`qstat -x`) for the jobs that left the queue.

Availability: `qstat -Q -f -F json` gives each execution queue's state and job counts,
`pbsnodes -a -F json` the nodes' CPUs and GPUs (a node with a `queue` attribute serves that queue
only, any other every queue), `qstat -f -F json` every job in the server's order, which is the
position reported (PBS's own sort formula is not visible to users)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import Commands, count, epoch, first_exec_host, queued_jobs, shell_exit_code
from .pbs_common import LIVE_STATES, Node, PBSFamily, QueueColumns, ended_state, queue_load

FINISHED_STATES = ("F", "X")  # finished; array subjob finished
#: substate of a finished job that was deleted (qdel) rather than ending by itself
SUBSTATE_TERMINATED = 91
JSON_FLAGS = ("-f", "-F", "json")
#: qstat -Q -f's attributes, its state_count words for waiting and for running jobs.
QUEUE_COLUMNS = QueueColumns(
    enabled="enabled",
    started="started",
    yes="True",
    waiting=("Queued", "Held", "Waiting", "Transit"),
    running=("Running", "Exiting", "Begun"),
)


def _when(text: Any) -> dt.datetime | None:
    """PBS prints times as ctime() strings in the server's local time; some attributes as epoch
    seconds."""
    if isinstance(text, int | float) or str(text).isdigit():
        return epoch(text)
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
        exit_code=shell_exit_code(status),
    )


def _document(stdout: str) -> dict[str, Any]:
    # strict=False: values (Variable_List, comments) may carry raw control characters.
    return json.loads(stdout, strict=False) if stdout.strip() else {}


def _node(node: dict[str, Any]) -> Node:
    available = node.get("resources_available") or {}
    assigned = node.get("resources_assigned") or {}
    cpus, gpus = count(available.get("ncpus")), count(available.get("ngpus"))
    return Node(
        cpus=cpus,
        gpus=gpus,
        cpus_free=max(0, cpus - count(assigned.get("ncpus"))),
        gpus_free=max(0, gpus - count(assigned.get("ngpus"))),
        state=str(node.get("state", "")),
        has_jobs=bool(node.get("jobs")),
    )


class PBSPro(PBSFamily):
    name = "pbspro"
    commands: ClassVar[Commands] = {
        "submit": ("qsub",),
        # Every queued and running job of every user; finished ones leave it for the history.
        "query": ("qstat", *JSON_FLAGS),
        # The history of the given jobs (or, to find a tag after a restart, of every job).
        "accounting": ("qstat", "-x", *JSON_FLAGS, "{{ job_ids }}"),
        "cancel": ("qdel", "{{ job_ids }}"),
        "version": ("qstat", "--version"),
        "partitions": ("qstat", "-Q", *JSON_FLAGS),
        "nodes": ("pbsnodes", "-a", "-F", "json"),
        "all_jobs": ("qstat", *JSON_FLAGS),
    }
    no_accounting_patterns = (r"job_history_enable",)

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        for job_id, attributes in (_document(stdout).get("Jobs") or {}).items():
            yield _status(job_id, attributes)

    def parse_version(self, stdout: str) -> str:
        return stdout.strip().removeprefix("pbs_version =").strip()

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        listed_nodes = list((_document(nodes).get("nodes") or {}).values())
        reports_gpus = any("ngpus" in n.get("resources_available", {}) for n in listed_nodes)
        loads = []
        for name, queue in (_document(stdout).get("Queue") or {}).items():
            if queue.get("queue_type") != "Execution":
                continue  # a routing queue runs nothing itself
            counts = {
                k: int(v) for k, v in re.findall(r"(\w+):(\d+)", queue.get("state_count", ""))
            }
            # A node with a queue attribute serves that queue only.
            served = [_node(n) for n in listed_nodes if n.get("queue") in (None, name)]
            # state_count's words are capitalized, no attribute's name is.
            entry = queue | counts
            loads.append(queue_load(name, entry, QUEUE_COLUMNS, served, reports_gpus=reports_gpus))
        return loads

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        return queued_jobs(
            (
                job_id,
                str(attributes.get("queue", "")),
                LIVE_STATES.get(str(attributes.get("job_state", ""))),
            )
            for job_id, attributes in (_document(stdout).get("Jobs") or {}).items()
        )
