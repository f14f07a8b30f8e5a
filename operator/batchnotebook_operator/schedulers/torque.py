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
    total,
    xml_text,
)
from .pbs_common import LIVE_STATES, PBSFamily, ended_state, queue_state, takes_jobs

#: qstat prints one XML document per job-id operand; with none, one for all jobs.
DOCUMENT = re.compile(r"<Data\b.*?(?:</Data>|<Data\s*/>)", re.DOTALL)
#: qstat -Q's columns for waiting and for running jobs.
WAITING_COLUMNS = ("Que", "Hld", "Wat", "Trn")
RUNNING_COLUMNS = ("Run", "Ext")


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
        cpus_total = cpus_idle = gpus_total = gpus_idle = nodes_idle = 0
        for node in listed:
            processors, gpus = count(xml_text(node, "np")), count(xml_text(node, "gpus"))
            used = len([slot for slot in xml_text(node, "jobs").split(",") if slot.strip()])
            cpus_total += processors
            gpus_total += gpus
            if takes_jobs(xml_text(node, "state")):
                cpus_idle += max(0, processors - used)
                gpus_idle += gpus if not used else 0
                nodes_idle += not used
        return [
            PartitionLoad(
                name=queue["Queue"],
                state=queue_state(
                    enabled=queue.get("Ena") == "yes", started=queue.get("Str") == "yes"
                ),
                cpus_idle=cpus_idle,
                cpus_total=cpus_total,
                gpus_idle=gpus_idle if reports_gpus else None,
                gpus_total=gpus_total if reports_gpus else None,
                nodes_idle=nodes_idle,
                nodes_total=len(listed),
                jobs_pending=total(queue, WAITING_COLUMNS),
                jobs_running=total(queue, RUNNING_COLUMNS),
            )
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
