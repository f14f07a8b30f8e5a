"""Torque (4 to 6): qsub, one `qstat -x` (XML) for all of a cluster's jobs, qdel.

Torque keeps no job history a client can ask for: a finished job stays in qstat, in state C with
its exit_status, for the server's keep_completed seconds, then is gone (tracejob reads the
server's log files, on the server host, one job at a time). The accounting fallback therefore
asks qstat again, for the forgotten ids only; what it no longer knows has vanished.

Availability: `qstat -Q` gives each execution queue's state and job counts, `pbsnodes -x` the
nodes' processors (np) and the job slots in use; every node counts for every queue (a queue tied
to nodes by properties does not say so in qstat). Torque tells how many GPUs a node has, not
which are in use: only the GPUs of a node without jobs count as idle. The position is the
server's order in `qstat -x`."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import first_exec_host
from .pbs_common import LIVE_STATES, PBSFamily, ended_state, exit_code

#: qstat prints one XML document per job-id operand; with none, one for all jobs.
DOCUMENT = re.compile(r"<Data\b.*?(?:</Data>|<Data\s*/>)", re.DOTALL)
#: qstat -Q's columns for waiting and for running jobs.
WAITING_COLUMNS = ("Que", "Hld", "Wat", "Trn")
RUNNING_COLUMNS = ("Run", "Ext")
#: A node in this state takes new jobs; Torque lists states comma-separated (down,offline).
NODE_TAKES_JOBS = "free"


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


def _queues(stdout: str) -> list[dict[str, str]]:
    """The rows of `qstat -Q` by its header's column names (the dashes under it skipped)."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    return [
        dict(zip(header, row, strict=True))
        for row in lines[1:]
        if len(row) == len(header) and not row[0].startswith("-")
    ]


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _queue_state(queue: dict[str, str]) -> str:
    enabled, started = queue.get("Ena") == "yes", queue.get("Str") == "yes"
    if enabled and started:
        return "up"
    return "stopped" if enabled else "disabled"  # stopped: takes jobs, starts none


class Torque(PBSFamily):
    name = "torque"
    commands = {  # noqa: RUF012 - class-level data read by the base class
        "submit": ["qsub"],
        # Every job of every user, completed ones included while keep_completed lasts.
        "query": ["qstat", "-x"],
        "accounting": ["qstat", "-x", "{{ job_ids }}"],
        "cancel": ["qdel", "{{ job_ids }}"],
        "version": ["qstat", "--version"],
        "partitions": ["qstat", "-Q"],
        "nodes": ["pbsnodes", "-x"],
        "all_jobs": ["qstat", "-x"],
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

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        listed = [n for d in DOCUMENT.findall(nodes) for n in ET.fromstring(d).iter("Node")]
        reports_gpus = any(n.find("gpus") is not None for n in listed)
        cpus_total = cpus_idle = gpus_total = gpus_idle = nodes_idle = 0
        for node in listed:
            processors, gpus = _number(_text(node, "np")), _number(_text(node, "gpus"))
            used = len([slot for slot in _text(node, "jobs").split(",") if slot.strip()])
            cpus_total += processors
            gpus_total += gpus
            if NODE_TAKES_JOBS in _text(node, "state").split(","):
                cpus_idle += max(0, processors - used)
                gpus_idle += gpus if not used else 0
                nodes_idle += not used
        return [
            PartitionLoad(
                name=queue["Queue"],
                state=_queue_state(queue),
                cpus_idle=cpus_idle,
                cpus_total=cpus_total,
                gpus_idle=gpus_idle if reports_gpus else None,
                gpus_total=gpus_total if reports_gpus else None,
                nodes_idle=nodes_idle,
                nodes_total=len(listed),
                jobs_pending=sum(_number(queue.get(column)) for column in WAITING_COLUMNS),
                jobs_running=sum(_number(queue.get(column)) for column in RUNNING_COLUMNS),
            )
            for queue in _queues(stdout)
            if queue.get("T") == "E"  # a routing queue runs nothing itself
        ]

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        queued = []
        for document in DOCUMENT.findall(stdout):
            for job in ET.fromstring(document).iter("Job"):
                state = LIVE_STATES.get(_text(job, "job_state"))
                if state in (JobState.PENDING, JobState.RUNNING):
                    queued.append(
                        QueuedJob(
                            _text(job, "Job_Id"), (_text(job, "queue"),), state is JobState.PENDING
                        )
                    )
        return queued
