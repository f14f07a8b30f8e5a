"""IBM Spectrum LSF: bsub with the script on stdin, one `bjobs -json` for all of a cluster's
notebooks, `bhist -l` for jobs bjobs forgot (it keeps finished jobs for CLEAN_PERIOD only).

Availability: `bqueues -w` gives each queue's status and pending and running job counts,
`bhosts -w` the hosts' job slots (LSF's CPUs), `bjobs -u all` every unfinished job, pending ones
in the order LSF considers them for dispatch. Every host counts for every queue (a queue's HOSTS
list is only in `bqueues -l`); GPUs are in `bhosts -gpu` only and are not reported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import ClassVar

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from ..transports import CommandResult
from .base import Commands, Scheduler, count, first_exec_host, queued_jobs, table

STATES = {
    "PEND": JobState.PENDING,
    "PROV": JobState.PENDING,
    "WAIT": JobState.PENDING,
    "PSUSP": JobState.PENDING,
    "USUSP": JobState.PENDING,
    "SSUSP": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "ZOMBI": JobState.COMPLETING,
    "DONE": JobState.FINISHED,
    "EXIT": JobState.FAILED,
    "UNKWN": JobState.UNKNOWN,
}
#: EXIT_REASON prefixes (LSF's TERM_* codes) that mean someone cancelled the job.
CANCELLED_BY = ("TERM_OWNER", "TERM_ADMIN", "TERM_FORCE_OWNER", "TERM_FORCE_ADMIN")
QUERY_FIELDS = "jobid job_name stat user exec_host pend_reason exit_code exit_reason"
#: What bjobs, bkill and bhist print when their filter matches nothing: an answer, not a failure.
NOTHING_FOUND = re.compile(r"No (?:unfinished |matching )?job found|is not found", re.IGNORECASE)
# bhist -l: "Job <12>, Job Name <bnb-x>, User <alice>, ..." then one line per event.
HISTORY_HEADER = re.compile(
    r"^Job <(?P<id>[^>]+)>(?:, Job Name <(?P<name>[^>]*)>)?, User <(?P<user>[^>]*)>"
)
# "Dispatched to <hostA>" (older) or "Dispatched 2 Task(s) on Host(s) <hostA> <hostB>, ..."
HISTORY_HOSTS = re.compile(r"Dispatched (?:to|\d+ Task\(s\) on Host\(s\)) <([^>]*)>")
HISTORY_DONE = re.compile(r": Done successfully\.")
HISTORY_EXIT = re.compile(r": Exited (?:with exit code (\d+)|by signal (\d+))")
HISTORY_COMPLETED = re.compile(r"Completed <(?:done|exit)>(?:; (\S.*))?$")
HISTORY_KILLED = re.compile(r": Signal <\w+> requested by user or administrator <[^>]*>")
CONTINUATION = " " * 21
#: bhosts' status of a host that takes new jobs (closed_Full, closed_Adm, unavail... do not).
HOST_TAKES_JOBS = "ok"
HISTORY_EVENT = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d(?: \d{4})?: ")


def _value(record: dict, field: str) -> str:
    value = record.get(field)
    return "" if value in (None, "-") else str(value).strip()


def _reason(text: str) -> str:
    """LSF ends each pending reason with ';' and may list several."""
    return "; ".join(part.strip() for part in text.split(";") if part.strip())


def _exit_code(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _history_blocks(text: str) -> Iterator[list[str]]:
    """bhist -l prints one block per job, separated by dashed lines; long lines are wrapped at a
    fixed width and continue, indented, on the next line (even inside a word)."""
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("-----"):
            if block:
                yield block
            block = []
        elif line.startswith(CONTINUATION) and block:
            block[-1] += line[len(CONTINUATION) :]
        elif line.strip():
            block.append(line.rstrip())
    if block:
        yield block


class LSF(Scheduler):
    name = "lsf"
    suspended_states = frozenset({"PSUSP", "USUSP", "SSUSP"})
    commands: ClassVar[Commands] = {
        "submit": ("bsub",),
        # -J takes one name, with wildcards: every BatchNotebook tag starts with "bnb-" (base.py),
        # the exact tags are picked out of the answer.
        "query": ("bjobs", "-a", "-u", "all", "-J", "bnb-*", "-o", QUERY_FIELDS, "-json"),
        "accounting": (
            "bhist",
            "-a",
            "-l",
            "-u",
            "all",
            "{% if tags and not job_ids %}-J{% endif %}",
            "{% if tags and not job_ids %}{{ tags[0] }}{% endif %}",
            "{{ job_ids }}",
        ),
        "cancel": ("bkill", "{{ job_ids }}"),
        "version": ("lsid",),
        "partitions": ("bqueues", "-w"),
        "nodes": ("bhosts", "-w"),
        "all_jobs": ("bjobs", "-u", "all", "-o", "jobid queue stat", "-json"),
    }
    unavailable_patterns = (
        r"LSF is down",
        r"Cannot connect to LSF",
        r"not responding",
        r"still trying",
        r"Please wait",
        r"Failed in an LSF library call",
        r"Connection refused",
        r"Timeout",
    )
    no_accounting_patterns = (r"No matching job found",)

    def check(self, result: CommandResult, *, refusal: bool = False) -> str:
        # "No job found" is bjobs' and bhist's answer when nothing matches, whatever the exit
        # status; it must not read as "the scheduler did not answer".
        message = result.stderr + result.stdout
        if (
            result.returncode
            and not refusal
            and NOTHING_FOUND.search(message)
            and not self.is_unavailable(message)
        ):
            return ""
        return super().check(result, refusal=refusal)

    def parse_submit(self, stdout: str) -> str:
        # "Job <1815> is submitted to default queue <normal>."
        match = re.search(r"^Job <(\d+)> is submitted to", stdout, re.M)
        if not match:
            raise ValueError(f"no job id in bsub output: {stdout!r}")
        return match[1]

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        if not stdout.strip():
            return
        for record in json.loads(stdout).get("RECORDS", []):
            if "ERROR" in record or not _value(record, "JOBID"):
                continue  # "Job <12> is not found": nothing to report for it
            raw = _value(record, "STAT")
            state = STATES.get(raw, JobState.UNKNOWN)
            exit_reason = _value(record, "EXIT_REASON")
            if state is JobState.FAILED and exit_reason.startswith(CANCELLED_BY):
                state = JobState.CANCELLED
            yield JobStatus(
                job_id=_value(record, "JOBID"),
                name=_value(record, "JOB_NAME"),
                user=_value(record, "USER"),
                state=state,
                raw_state=raw,
                exec_host=first_exec_host(_value(record, "EXEC_HOST"))
                if state is not JobState.PENDING
                else "",
                reason=_reason(_value(record, "PEND_REASON"))
                if state is JobState.PENDING
                else exit_reason,
                exit_code=_exit_code(_value(record, "EXIT_CODE")) if state.ended else None,
            )

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        for block in _history_blocks(stdout):
            header = HISTORY_HEADER.match(block[0])
            if not header:
                continue
            host, state, raw, exit_code, reason, killed = "", JobState.UNKNOWN, "", None, "", False
            for line in block[1:]:
                event = HISTORY_EVENT.sub("", line)
                if hosts := HISTORY_HOSTS.search(event):
                    host = first_exec_host(hosts[1])
                if HISTORY_KILLED.search(line):
                    killed = True
                if HISTORY_DONE.search(line):
                    state, raw, exit_code = JobState.FINISHED, "DONE", 0
                if exited := HISTORY_EXIT.search(line):
                    state, raw = JobState.FAILED, "EXIT"
                    code, signal = exited.groups()
                    exit_code = int(code) if code else 128 + int(signal)
                if completed := HISTORY_COMPLETED.search(event):
                    reason = (completed[1] or "").rstrip(".")
            if state is JobState.UNKNOWN:
                continue  # still pending or running: the queue speaks for it
            if state is JobState.FAILED and (killed or reason.startswith(CANCELLED_BY)):
                state = JobState.CANCELLED
            yield JobStatus(
                job_id=header["id"],
                name=header["name"] or "",
                user=header["user"],
                state=state,
                raw_state=raw,
                exec_host=host,
                exit_code=exit_code,
                reason=reason,
            )

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        hosts = table(nodes)
        usable = [h for h in hosts if h.get("STATUS") == HOST_TAKES_JOBS]
        # MAX "-": no slot limit on the host, so no count of its CPUs either.
        counted = all(h.get("MAX", "").isdigit() for h in hosts)
        cpus_idle = sum(
            max(0, count(h.get("MAX")) - count(h.get("NJOBS")) - count(h.get("RSV")))
            for h in usable
        )
        return [
            PartitionLoad(
                name=queue["QUEUE_NAME"],
                state=queue["STATUS"].lower(),  # open:active, closed:inact, ...
                cpus_idle=cpus_idle if counted else None,
                cpus_total=sum(count(h.get("MAX")) for h in hosts) if counted else None,
                nodes_idle=sum(count(h.get("NJOBS")) == 0 for h in usable),
                nodes_total=len(hosts),
                jobs_pending=count(queue.get("PEND")),
                jobs_running=count(queue.get("RUN")),
            )
            for queue in table(stdout)
        ]

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        if not stdout.strip():
            return []  # "No unfinished job found"
        return queued_jobs(
            (_value(record, "JOBID"), _value(record, "QUEUE"), STATES.get(_value(record, "STAT")))
            for record in json.loads(stdout).get("RECORDS", [])
        )

    def parse_version(self, stdout: str) -> str:
        # lsid: "IBM Spectrum LSF Standard 10.1.0.13, Nov 10 2022" then copyright and cluster.
        match = re.search(r"LSF[^\n,]*?(\d+(?:\.\d+)+)", stdout)
        return match[1] if match else super().parse_version(stdout)
