"""Grid Engine (SGE, Son of Grid Engine, Univa/Altair): qsub, one `qstat -xml` for every job of
every user, qacct for jobs the queue forgot.

Pending reasons: Grid Engine gives a job's scheduling messages ("queue instance "all.q@vm"
dropped because it is full") only in `qstat -j`, which returns the whole job object (~4.5 KB of
XML per job). The poll does not pay that for every job every interval: the reason it reports is
the meaning of the state letters the one `qstat -xml` shows beyond "queued, waiting" or
"running": "hold" for hqw, "error" for Eqw, "suspended" for s, "deletion" for dr.

Availability: a cluster queue is a partition. `qstat -f -s r` lists its queue instances (one per
host: slots used, reserved, total, state letters) with their running jobs; `qstat -s p -r` the
pending jobs in the order the scheduler considers them (by priority) with the queues they
requested. Grid Engine has no GPU count of its own (sites define a complex): GPUs are not
reported.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from typing import ClassVar

from ..errors import SchedulerUnavailable
from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import Commands, Scheduler, first_exec_host, xml_text

# qstat prints a job's state as letters (qstat(1)); the first of these found in a state decides,
# so that "dr" (deleted while running) is ending, "hr" (hold on a running job) still running and
# "Eqw" waiting in error. An error state (Eqw) stays in the queue until an admin clears it or the
# job is deleted, so it is pending, not failed: a failed job would never be cancelled on delete.
STATES = {
    "d": JobState.COMPLETING,
    "E": JobState.PENDING,
    "s": JobState.PENDING,
    "S": JobState.PENDING,
    "T": JobState.PENDING,
    "r": JobState.RUNNING,
    "t": JobState.RUNNING,
    "h": JobState.PENDING,
    "w": JobState.PENDING,
    "q": JobState.PENDING,
}
# What the letters beyond q(ueued), w(aiting), r(unning) and t(ransferring) stand for, in
# qstat(1)'s words: they say why a job is not simply waiting or running.
STATE_LETTERS = {
    "d": "deletion",
    "E": "error",
    "h": "hold",
    "R": "restarted",
    "s": "suspended",
    "S": "suspended by its queue",
    "T": "suspended at a load threshold",
}
# A finished job that qstat still lists when asked with `-s z`; how it ended is in qacct only.
ZOMBIE = "z"
# qacct's "failed" code of a job killed by a signal after it started: what qdel does (SIGKILL).
FAILED_AFTER_JOB = 100
SIGKILL_EXIT_STATUS = 137
ACCOUNTING_SEPARATOR = re.compile(r"^=+\s*$", re.M)
# A queue instance's state letters (qstat(1)); an instance with any of them takes no new job.
QUEUE_STATE_WORDS = {
    "u": "unknown",
    "a": "alarm",
    "A": "alarm",
    "C": "suspended",
    "s": "suspended",
    "S": "suspended",
    "d": "disabled",
    "D": "disabled",
    "E": "error",
    "c": "ambiguous",
    "o": "orphaned",
    "P": "preempted",
}


def _state(code: str) -> JobState:
    return next((state for letter, state in STATES.items() if letter in code), JobState.UNKNOWN)


def _reason(code: str) -> str:
    return ", ".join(STATE_LETTERS[letter] for letter in code if letter in STATE_LETTERS)


def _xml(stdout: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(stdout)
    except ElementTree.ParseError as error:
        # Half an answer is no answer: reading it as "no jobs" would end every notebook.
        raise SchedulerUnavailable(f"qstat -xml printed no valid XML: {error}") from error


def _int(element: ElementTree.Element, tag: str) -> int:
    return _leading_int(xml_text(element, tag)) or 0


def _leading_int(text: str) -> int | None:
    match = re.match(r"\s*(-?\d+)", text)
    return int(match[1]) if match else None


class GridEngine(Scheduler):
    name = "sge"
    commands: ClassVar[Commands] = {
        "submit": ("qsub", "-terse"),
        # Every user's pending and running jobs; qstat cannot filter by name, the client does.
        "query": ("qstat", "-xml", "-u", "*"),
        # qacct takes one id, one name or one name pattern per call: the exact tag or id when
        # there is one, otherwise every job named like ours (filtered by id here). qacct reads
        # the accounting file itself, so it answers even while sge_qmaster is down.
        "accounting": (
            "qacct",
            "-j",
            "{% if tags|length == 1 %}{{ tags[0] }}"
            "{% elif job_ids|length == 1 %}{{ job_ids[0] }}"
            "{% else %}bnb-*{% endif %}",
        ),
        "cancel": ("qdel", "{{ job_ids }}"),
        "version": ("qstat", "-help"),
        "partitions": ("qstat", "-f", "-s", "r", "-xml", "-u", "*"),
        "all_jobs": ("qstat", "-s", "p", "-r", "-xml", "-u", "*"),
    }
    unavailable_patterns = (
        # error: commlib error: got select error (Connection refused) / (No route to host)
        r"commlib error",
        # unable to contact qmaster using port 6444 on host "vm" / unable to send message to ...
        r"unable to (contact|send message to) qmaster",
        # error: failed receiving gdi request response for mid=1 (got syncron message receive
        # timeout error).
        r"failed receiving gdi request response",
        # Unable to initialize environment because of error: unable to read qmaster name ...
        r"Unable to initialize environment",
    )
    # "error: job id 12 not found" / "error: job name bnb-... not found": not in the accounting
    # file (yet: a job ends there a moment after it leaves the queue). No accounting file at all
    # (no job has ended since the cluster was set up): "<file>: No such file or directory" on
    # stderr ("no jobs running since startup" on stdout).
    no_accounting_patterns = (
        r"error: job (id|name) \S+ not found",
        r": No such file or directory",
    )

    def is_suspended(self, raw_state: str) -> bool:
        # A state is letters ("rs": running, suspended): s by the user, S by its queue, T at a
        # load threshold.
        return any(letter in raw_state for letter in "sST")

    def parse_submit(self, stdout: str) -> str:
        # -terse prints "12" (an array job "12.1-10:1"); without it: Your job 12 ("name") has been
        # submitted.
        match = re.search(
            r"^(?:Your job(?:-array)? )?(\d+)(?:\.\S+)?(?: \(.*\) has been submitted)?\s*$",
            stdout.strip(),
            re.M,
        )
        if not match:
            raise ValueError(f"no job id in qsub output: {stdout!r}")
        return match[1]

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        for job in _xml(stdout).iter("job_list"):
            code = xml_text(job, "state")
            if code == ZOMBIE:
                continue
            state = _state(code)
            yield JobStatus(
                job_id=xml_text(job, "JB_job_number"),
                name=xml_text(job, "JB_name"),
                user=xml_text(job, "JB_owner"),
                state=state,
                raw_state=code,
                reason=_reason(code),
                exec_host=first_exec_host(xml_text(job, "queue_name"))
                if state is not JobState.PENDING
                else "",
            )

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        for block in ACCOUNTING_SEPARATOR.split(stdout):
            fields = {}
            for line in block.splitlines():
                key, _, value = line.strip().partition(" ")
                if key:
                    fields[key] = value.strip()
            if "jobnumber" not in fields:
                continue
            failed = _leading_int(fields.get("failed", "")) or 0
            exit_status = _leading_int(fields.get("exit_status", ""))
            if failed == FAILED_AFTER_JOB and exit_status == SIGKILL_EXIT_STATUS:
                # Deleted (qdel kills with SIGKILL); the record cannot tell qdel from another
                # SIGKILL.
                state = JobState.CANCELLED
            elif failed or exit_status:
                state = JobState.FAILED
            else:
                state = JobState.FINISHED
            # "failed 100 : assumedly after job" → "failed 100 : assumedly after job"
            failure = re.sub(r"\s+", " ", fields.get("failed", "")).strip()
            yield JobStatus(
                job_id=fields["jobnumber"],
                name=fields.get("jobname", ""),
                user=fields.get("owner", ""),
                state=state,
                raw_state=f"failed {failed}" if failed else f"exit_status {exit_status}",
                reason=f"failed {failure}" if failed else "",
                exec_host=first_exec_host(fields.get("hostname", "")),
                exit_code=exit_status,
            )

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        loads: dict[str, dict] = {}
        running: dict[str, set[str]] = {}
        refusing: dict[str, str] = {}  # queue -> the state of an instance that takes no job
        for instance in _xml(stdout).iter("Queue-List"):
            queue = xml_text(instance, "name").split("@", 1)[0]
            used, reserved = _int(instance, "slots_used"), _int(instance, "slots_resv")
            total = _int(instance, "slots_total")
            letters = [
                letter for letter in xml_text(instance, "state") if letter in QUEUE_STATE_WORDS
            ]
            load = loads.setdefault(
                queue, dict.fromkeys(("cpus_idle", "cpus_total", "nodes_idle", "nodes_total"), 0)
            )
            load["cpus_total"] += total
            load["nodes_total"] += 1
            if letters:
                refusing.setdefault(queue, QUEUE_STATE_WORDS[letters[0]])
            else:
                load["cpus_idle"] += max(0, total - used - reserved)
                load["nodes_idle"] += used + reserved == 0
                load["accepting"] = True
            running.setdefault(queue, set()).update(
                xml_text(job, "JB_job_number") for job in instance.iter("job_list")
            )
        return [
            PartitionLoad(
                name=queue,
                state="up" if load.pop("accepting", False) else refusing[queue],
                jobs_running=len(running[queue]),
                **load,
            )
            for queue, load in loads.items()
        ]

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        # qstat lists pending jobs in the order the scheduler considers them: by priority.
        return [
            QueuedJob(
                job_id=xml_text(job, "JB_job_number"),
                # -q all.q or -q all.q@vm; none: any queue may run it.
                partitions=tuple(
                    dict.fromkeys(
                        (queue.text or "").strip().split("@", 1)[0]
                        for queue in job.iter("hard_req_queue")
                    )
                ),
                pending=True,
            )
            for job in _xml(stdout).iter("job_list")
            if xml_text(job, "state") != ZOMBIE
        ]
