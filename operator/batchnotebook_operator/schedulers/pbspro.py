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
from .base import Commands, count, epoch, first_exec_host, queued_jobs, shell_exit_code, total
from .pbs_common import LIVE_STATES, PBSFamily, ended_state, queue_state, takes_jobs

FINISHED_STATES = ("F", "X")  # finished; array subjob finished
#: substate of a finished job that was deleted (qdel) rather than ending by itself
SUBSTATE_TERMINATED = 91
JSON_FLAGS = ("-f", "-F", "json")
#: qstat -Q's state_count words for waiting and for running jobs.
WAITING_COUNTS = ("Queued", "Held", "Waiting", "Transit")
RUNNING_COUNTS = ("Running", "Exiting", "Begun")


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


def _cpus_and_gpus(node: dict[str, Any], resources: str) -> tuple[int, int]:
    """A node's CPUs and GPUs in its resources_available or resources_assigned."""
    values = node.get(resources) or {}
    return count(values.get("ncpus")), count(values.get("ngpus"))


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
            served = [n for n in listed_nodes if n.get("queue") in (None, name)]
            cpus_total = gpus_total = cpus_idle = gpus_idle = nodes_idle = 0
            for node in served:
                cpus, gpus = _cpus_and_gpus(node, "resources_available")
                cpus_total += cpus
                gpus_total += gpus
                if not takes_jobs(str(node.get("state", ""))):
                    continue
                cpus_used, gpus_used = _cpus_and_gpus(node, "resources_assigned")
                cpus_idle += max(0, cpus - cpus_used)
                gpus_idle += max(0, gpus - gpus_used)
                nodes_idle += not node.get("jobs")
            loads.append(
                PartitionLoad(
                    name=name,
                    state=queue_state(
                        enabled=queue.get("enabled") == "True",
                        started=queue.get("started") == "True",
                    ),
                    cpus_idle=cpus_idle,
                    cpus_total=cpus_total,
                    gpus_idle=gpus_idle if reports_gpus else None,
                    gpus_total=gpus_total if reports_gpus else None,
                    nodes_idle=nodes_idle,
                    nodes_total=len(served),
                    jobs_pending=total(counts, WAITING_COUNTS),
                    jobs_running=total(counts, RUNNING_COUNTS),
                )
            )
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
