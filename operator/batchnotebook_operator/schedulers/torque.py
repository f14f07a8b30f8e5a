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
from typing import ClassVar

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import (
    Commands,
    count,
    first_exec_host,
    integer,
    queued_jobs,
    shell_exit_code,
    table,
    xml_text,
)
from .pbs_common import LIVE_STATES, Node, PBSFamily, QueueColumns, ended_state, queue_load

#: qstat prints one XML document per job-id operand; with none, one for all jobs.
DOCUMENT = re.compile(r"<Data\b.*?(?:</Data>|<Data\s*/>)", re.DOTALL)
#: qstat -Q's table columns: enabled, started, and its counts of waiting and running jobs.
QUEUE_COLUMNS = QueueColumns(
    enabled="Ena",
    started="Str",
    yes="yes",
    waiting=("Que", "Hld", "Wat", "Trn"),
    running=("Run", "Ext"),
)


def _elements(stdout: str, tag: str) -> Iterator[ET.Element]:
    for document in DOCUMENT.findall(stdout):
        yield from ET.fromstring(document).iter(tag)


def _status(job: ET.Element) -> JobStatus:
    raw = xml_text(job, "job_state")
    status = integer(xml_text(job, "exit_status"))
    if raw == "C":
        # A job deleted before it ran completes without an exit status.
        state = ended_state(status, deleted=status is None)
    else:
        state = LIVE_STATES.get(raw, JobState.UNKNOWN)
    return JobStatus(
        job_id=xml_text(job, "Job_Id"),
        state=state,
        raw_state=raw,
        name=xml_text(job, "Job_Name"),
        user=xml_text(job, "Job_Owner").split("@", 1)[0],
        reason=xml_text(job, "comment"),
        exec_host=first_exec_host(xml_text(job, "exec_host"))
        if state is not JobState.PENDING
        else "",
        exit_code=shell_exit_code(status),
    )


def _node(node: ET.Element) -> Node:
    # Torque tells a node's job slots in use, not which GPUs: a node with a job has none idle.
    processors, gpus = count(xml_text(node, "np")), count(xml_text(node, "gpus"))
    used = len([slot for slot in xml_text(node, "jobs").split(",") if slot.strip()])
    return Node(
        cpus=processors,
        gpus=gpus,
        cpus_free=max(0, processors - used),
        gpus_free=gpus if not used else 0,
        state=xml_text(node, "state"),
        has_jobs=bool(used),
    )


class Torque(PBSFamily):
    name = "torque"
    commands: ClassVar[Commands] = {
        "submit": ("qsub",),
        # Every job of every user, completed ones included while keep_completed lasts.
        "query": ("qstat", "-x"),
        "accounting": ("qstat", "-x", "{{ job_ids }}"),
        "cancel": ("qdel", "{{ job_ids }}"),
        "version": ("qstat", "--version"),
        "partitions": ("qstat", "-Q"),
        "nodes": ("pbsnodes", "-x"),
        "all_jobs": ("qstat", "-x"),
    }
    version_prefixes = ("Version:",)

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        return (_status(job) for job in _elements(stdout, "Job"))

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        listed = list(_elements(nodes, "Node"))
        reports_gpus = any(n.find("gpus") is not None for n in listed)
        every_node = [_node(node) for node in listed]  # qstat -Q does not tie nodes to queues
        return [
            queue_load(queue["Queue"], queue, QUEUE_COLUMNS, every_node, reports_gpus=reports_gpus)
            for queue in table(stdout)
            if queue.get("T") == "E"  # a routing queue runs nothing itself
        ]

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        return queued_jobs(
            (
                xml_text(job, "Job_Id"),
                xml_text(job, "queue"),
                LIVE_STATES.get(xml_text(job, "job_state")),
            )
            for job in _elements(stdout, "Job")
        )
