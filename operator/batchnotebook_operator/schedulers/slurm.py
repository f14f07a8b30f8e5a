"""Slurm: sbatch, one squeue for all of a cluster's notebooks, sacct for jobs squeue forgot."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

from ..model import JobState, JobStatus
from .base import Scheduler

STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "STOPPED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "COMPLETING": JobState.COMPLETING,
    "STAGE_OUT": JobState.COMPLETING,
    "COMPLETED": JobState.FINISHED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
}
NO_VALUE = {"", "n/a", "(null)", "none", "unknown", "n/a)"}
# %S: expected start of a pending job; %e: when a running job's walltime ends.
QUERY_FIELDS = "%i|%j|%u|%T|%B|%r|%S|%e"
ACCOUNTING_FIELDS = "JobID,JobName,User,State,ExitCode,NodeList"


def _value(text: str) -> str:
    text = text.strip()
    return "" if text.lower() in NO_VALUE else text


def _state(text: str) -> tuple[JobState, str]:
    raw = text.split()[0] if text.strip() else ""  # sacct says "CANCELLED by 1000"
    return STATES.get(raw.upper(), JobState.UNKNOWN), raw


def _start_time(text: str) -> dt.datetime | None:
    text = _value(text)
    try:
        # Slurm prints the controller's local time without a zone.
        return dt.datetime.fromisoformat(text).astimezone() if text else None
    except ValueError:
        return None


def _exit_code(text: str) -> int | None:
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not match:
        return None
    code, signal = int(match[1]), int(match[2])
    return 128 + signal if signal and not code else code


class Slurm(Scheduler):
    name = "slurm"
    commands = {  # noqa: RUF012 - class-level data read by the base class
        "submit": ["sbatch", "--parsable"],
        "query": [
            "squeue",
            "--noheader",
            "--all",
            "--states=all",
            "--name={{ tags|join(',') }}",
            f"--format={QUERY_FIELDS}",
        ],
        "accounting": [
            "sacct",
            "--allusers",  # as a service account sacct would show only its own jobs
            "--noheader",
            "--parsable2",
            "--allocations",
            "{% if job_ids %}--jobs={{ job_ids|join(',') }}{% endif %}",
            "{% if tags %}--name={{ tags|join(',') }}{% endif %}",
            "{% if tags %}--starttime=now-7days{% endif %}",
            f"--format={ACCOUNTING_FIELDS}",
        ],
        "cancel": ["scancel", "{{ job_ids }}"],
        "version": ["sinfo", "--version"],
    }
    unavailable_patterns = (
        r"Unable to contact slurm controller",
        r"Socket timed out",
        r"Connection refused",
        r"Zero Bytes were transmitted or received",
        r"Slurm backup controller in standby mode",
        r"Transport endpoint is not connected",
        r"slurm_persist_conn_open",
        r"Unable to connect to database",
        r"Resource temporarily unavailable",
    )

    no_accounting_patterns = (r"accounting storage is disabled",)

    def parse_submit(self, stdout: str) -> str:
        # --parsable prints "id" or "id;cluster"; without it "Submitted batch job id".
        match = re.search(r"^(?:Submitted batch job )?(\d+)(?:;\S+)?\s*$", stdout.strip(), re.M)
        if not match:
            raise ValueError(f"no job id in sbatch output: {stdout!r}")
        return match[1]

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        for line in stdout.splitlines():
            fields = line.split("|")
            if len(fields) != QUERY_FIELDS.count("|") + 1:
                continue
            job_id, name, user, state, host, reason, start, end = fields
            job_state, raw = _state(state)
            running = job_state in (JobState.RUNNING, JobState.COMPLETING)
            yield JobStatus(
                job_id=job_id.strip(),
                name=name,
                user=user,
                state=job_state,
                raw_state=raw,
                exec_host=_value(host) if job_state is not JobState.PENDING else "",
                reason=_value(reason),
                expected_start=_start_time(start) if job_state is JobState.PENDING else None,
                ends_at=_start_time(end) if running else None,
            )

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        for line in stdout.splitlines():
            fields = line.split("|")
            if len(fields) != 6 or "." in fields[0]:  # job steps are not the job
                continue
            job_id, name, user, state, exit_code, nodes = fields
            job_state, raw = _state(state)
            yield JobStatus(
                job_id=job_id,
                name=name,
                user=user,
                state=job_state,
                raw_state=raw,
                exec_host=_value(nodes) if "None assigned" not in nodes else "",
                exit_code=_exit_code(exit_code),
                reason=state.strip() if raw != state else "",
            )

    def parse_version(self, stdout: str) -> str:
        # "slurm 22.05.8", or "slurm-wlm 22.05.8" from Debian's build
        words = stdout.split()
        return words[-1] if words else ""
