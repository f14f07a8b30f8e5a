"""Slurm: sbatch, one squeue for all of a cluster's notebooks, sacct for jobs squeue forgot."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import ClassVar

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import Commands, Scheduler, first_exec_host

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
# %S: expected start of a pending job; %e: when a running job's walltime ends; %V: submitted.
QUERY_FIELDS = "%i|%j|%u|%T|%B|%r|%S|%e|%V"
ACCOUNTING_FIELDS = "JobID,JobName,User,State,ExitCode,NodeList,Submit"
# One line per node and partition: the partition's availability (up/down/drain/inact), the node's
# state, its CPUs allocated/idle/other/total, its generic resources and those in use.
PARTITION_FIELDS = "PartitionName:|,Available:|,NodeList:|,StateLong:|,CPUsState:|,Gres:|,GresUsed:"
# Every user's pending and running jobs: partitions (a comma list for a job that may run in
# several), priority and submit time order the pending ones.
ALL_JOBS_FIELDS = "%i|%P|%T|%Q|%V"
# `gpu:4`, `gpu:a100:4(S:0-1)`, in use `gpu:a100:2(IDX:0-1)`: the count is the last number.
GPU_GRES = re.compile(r"\bgpu(?::[^:,(]+)?:(\d+)")


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


def gpu_count(gres: str) -> int:
    """GPUs in a gres list as sinfo and slurmrestd print it (`(null)` or empty: none)."""
    return sum(int(count) for count in GPU_GRES.findall(gres))


def _submitted(text: str) -> str:
    return _value(text) or "9999"  # no submit time sorts last


def _id_order(job_id: str) -> int:
    digits = re.match(r"\d+", job_id)  # array jobs: 123_[1-5], 123_4
    return int(digits[0]) if digits else 0


class Slurm(Scheduler):
    name = "slurm"
    commands: ClassVar[Commands] = {
        "submit": ("sbatch", "--parsable"),
        "query": (
            "squeue",
            "--noheader",
            "--all",
            "--states=all",
            "--name={{ tags|join(',') }}",
            f"--format={QUERY_FIELDS}",
        ),
        "accounting": (
            "sacct",
            "--allusers",  # as a service account sacct would show only its own jobs
            "--noheader",
            "--parsable2",
            "--allocations",
            "{% if job_ids %}--jobs={{ job_ids|join(',') }}{% endif %}",
            "{% if tags %}--name={{ tags|join(',') }}{% endif %}",
            "{% if tags %}--starttime=now-7days{% endif %}",
            f"--format={ACCOUNTING_FIELDS}",
        ),
        "cancel": ("scancel", "{{ job_ids }}"),
        "version": ("sinfo", "--version"),
        "partitions": ("sinfo", "--noheader", "--Node", f"--Format={PARTITION_FIELDS}"),
        "all_jobs": (
            "squeue",
            "--noheader",
            "--all",
            "--states=PENDING,RUNNING",
            f"--format={ALL_JOBS_FIELDS}",
        ),
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
    suspended_states = frozenset({"SUSPENDED", "STOPPED"})

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
            job_id, name, user, state, host, reason, start, end, submitted = fields
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
                submitted_at=_start_time(submitted),
            )

    def parse_accounting(self, stdout: str) -> Iterator[JobStatus]:
        for line in stdout.splitlines():
            fields = line.split("|")
            if len(fields) != ACCOUNTING_FIELDS.count(",") + 1 or "." in fields[0]:
                continue  # job steps are not the job
            job_id, name, user, state, exit_code, nodes, submitted = fields
            job_state, raw = _state(state)
            yield JobStatus(
                job_id=job_id,
                name=name,
                user=user,
                state=job_state,
                raw_state=raw,
                # The allocation's nodes ("tx-c[1-2]"): the batch step runs on the first.
                exec_host=first_exec_host(_value(nodes)) if "None assigned" not in nodes else "",
                exit_code=_exit_code(exit_code),
                reason=state.strip() if raw != state else "",
                submitted_at=_start_time(submitted),
            )

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        loads: dict[str, dict] = {}
        for line in stdout.splitlines():
            fields = line.split("|")
            if len(fields) != PARTITION_FIELDS.count("|") + 1:
                continue
            name, available, _node, state, cpus, gres, gres_used = (f.strip() for f in fields)
            cpu_states = cpus.split("/")  # allocated/idle/other/total
            if len(cpu_states) != 4:
                continue
            idle_cpus, total_cpus = int(cpu_states[1]), int(cpu_states[3])
            gpus = gpu_count(gres)
            load = loads.setdefault(
                name,
                dict.fromkeys(("cpus_idle", "cpus_total", "gpus_idle", "gpus_total"), 0)
                | {"state": available.lower(), "nodes_idle": 0, "nodes_total": 0},
            )
            load["cpus_idle"] += idle_cpus
            load["cpus_total"] += total_cpus
            load["gpus_total"] += gpus
            # sinfo counts a drained or down node's CPUs as "other": its GPUs are not idle either.
            load["gpus_idle"] += max(0, gpus - gpu_count(gres_used)) if idle_cpus else 0
            load["nodes_total"] += 1
            load["nodes_idle"] += state in ("idle", "idle~")  # ~: powered off, started on demand
        return [PartitionLoad(name=name, **load) for name, load in loads.items()]

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        pending: list[tuple[tuple[int, str, int], QueuedJob]] = []
        running: list[tuple[tuple[int, str, int], QueuedJob]] = []
        for line in stdout.splitlines():
            fields = line.split("|")
            if len(fields) != ALL_JOBS_FIELDS.count("|") + 1:
                continue
            job_id, partitions, state, priority, submitted = (f.strip() for f in fields)
            job = QueuedJob(job_id, tuple(partitions.split(",")), state == "PENDING")
            # Slurm starts the highest priority first, then the earliest submitted.
            order = (-int(priority or 0), _submitted(submitted), _id_order(job_id))
            (pending if job.pending else running).append((order, job))
        pending.sort(key=lambda entry: entry[0])
        return [job for _order, job in pending + running]

    def parse_version(self, stdout: str) -> str:
        # "slurm 22.05.8", or "slurm-wlm 22.05.8" from Debian's build
        words = stdout.split()
        return words[-1] if words else ""
