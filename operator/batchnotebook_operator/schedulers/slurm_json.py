"""slurmrestd's JSON answers read into the Slurm dialect's own terms: the same states, "no value"
words and GPU counts as squeue, sacct and sinfo's text. One reading serves every version: v0.0.38
gives plain numbers and state names, v0.0.40 and later `{set, infinite, number}` objects and
lists of state flags."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from .base import first_exec_host
from .slurm import NO_VALUE, STATES, gpu_count

# A node with one of these state flags takes no new job: its CPUs and GPUs are not idle (sinfo
# counts them as "other").
UNAVAILABLE_NODE_FLAGS = frozenset({"DRAIN", "NOT_RESPONDING", "MAINTENANCE", "POWERING_DOWN"})


# The flags squeue shows instead of the base state, in the order it looks for them
# (job_state_string in Slurm's src/common/slurm_protocol_defs.c).
SHOWN_BEFORE_BASE_STATE = (
    "COMPLETING",
    "STAGE_OUT",
    "CONFIGURING",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
    "REVOKED",
    "RESV_DEL_HOLD",
    "SIGNALING",
)


def number(value: Any) -> int | None:
    """A count or time: a plain integer (v0.0.38) or `{set, infinite, number}` (v0.0.40+);
    None where it is unset or infinite."""
    if isinstance(value, dict):
        if not value.get("set") or value.get("infinite"):
            return None
        value = value.get("number")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def words(value: Any) -> list[str]:
    """A state or flag set: one name (v0.0.38) or a list of names (v0.0.40+), upper case."""
    names = value if isinstance(value, list) else [value] if value else []
    return [str(name).upper() for name in names if name]


def text_of(value: Any) -> str:
    """A field's text, "" where Slurm says it has none."""
    text = str(value).strip() if value is not None else ""
    return "" if text.lower() in NO_VALUE else text


def _state_name(value: Any) -> str:
    """The state squeue would print: a shown flag if the job has one, else its base state."""
    names = words(value)
    return next((flag for flag in SHOWN_BEFORE_BASE_STATE if flag in names), "") or (
        names[0] if names else ""
    )


def _wait_status_exit_code(status: Any) -> int | None:
    """slurmctld's exit_code is a wait(2) status (v0.0.38): a signal becomes 128 + its number;
    from v0.0.40 on, it is read as accounting's."""
    if isinstance(status, dict):
        return _accounting_exit_code(status, JobState.UNKNOWN)
    status = number(status)
    if status is None:
        return None
    signal = status & 0x7F
    return 128 + signal if signal else status >> 8


def _accounting_exit_code(exit_code: Any, state: JobState) -> int | None:
    if not isinstance(exit_code, dict):
        return None
    if "SIGNALED" in words(exit_code.get("status")):
        signal = exit_code.get("signal") or {}
        signal_id = number(signal.get("signal_id", signal.get("id")))
        return 128 + signal_id if signal_id is not None else None
    code = number(exit_code.get("return_code"))
    if code is None:
        return None
    # dbv0.0.38 in Slurm 22.05 reports a job that exited 3 as SUCCESS/0 (sacct: 3:0): a zero
    # that contradicts a failed job is unknown, not 0.
    return None if code == 0 and state is JobState.FAILED else code


def _epoch(value: Any) -> dt.datetime | None:
    """Slurm's seconds since the epoch; 0 or absent: not known."""
    value = number(value)
    if value is not None and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def parse_jobs(answer: dict) -> Iterator[JobStatus]:
    """Every job of `GET /slurm/<version>/jobs` (or `/job/<id>`)."""
    for job in answer.get("jobs") or []:
        raw = _state_name(job.get("job_state"))
        state = STATES.get(raw, JobState.UNKNOWN)
        pending = state is JobState.PENDING
        yield JobStatus(
            job_id=str(job.get("job_id", "")),
            name=job.get("name") or "",
            user=job.get("user_name") or "",
            state=state,
            raw_state=raw,
            reason=text_of(job.get("state_reason")),
            exec_host=""
            if pending
            else first_exec_host(text_of(job.get("batch_host")) or text_of(job.get("nodes"))),
            expected_start=_epoch(job.get("start_time")) if pending else None,
            exit_code=_wait_status_exit_code(job.get("exit_code")) if state.ended else None,
            submitted_at=_epoch(job.get("submit_time")),
        )


def parse_job_states(answer: dict) -> dict[str, str]:
    """`GET /slurm/<version>/jobs/state` (v0.0.40+): each job's state, by id, as squeue
    names it."""
    return {
        str(job.get("job_id")): _state_name(job.get("state"))
        for job in answer.get("jobs") or []
        if isinstance(job, dict) and job.get("job_id") is not None
    }


# Slurm errors a cancel may meet that leave nothing to cancel: no such job (2017), already done
# (2021).
NOTHING_TO_CANCEL = frozenset({2017, 2021})


def cancel_refusals(answer: dict) -> list[str]:
    """What `DELETE /slurm/<version>/job/<id>` refused, in Slurm's words: v0.0.42+ say it only in
    each job's `status[].error` (an HTTP 200 with no `errors`)."""
    refusals = []
    for entry in answer.get("status") or []:
        error = entry.get("error") if isinstance(entry, dict) else None
        if isinstance(error, dict) and error.get("code") and error["code"] not in NOTHING_TO_CANCEL:
            refusals.append(f"job {entry.get('step_id', '?')}: {text_of(error.get('message'))}")
    return refusals


def parse_accounting(answer: dict) -> Iterator[JobStatus]:
    """Every job of `GET /slurmdb/<version>/jobs`; steps are not jobs and are not read."""
    for job in answer.get("jobs") or []:
        job_state = job.get("state")
        raw = _state_name(job_state.get("current") if isinstance(job_state, dict) else job_state)
        state = STATES.get(raw, JobState.UNKNOWN)
        cancelled_by = text_of(job.get("kill_request_user"))
        nodes = text_of(job.get("nodes"))
        yield JobStatus(
            job_id=str(job.get("job_id", "")),
            name=job.get("name") or "",
            user=job.get("user") or "",
            state=state,
            raw_state=raw,
            reason=f"{raw} by {cancelled_by}"
            if state is JobState.CANCELLED and cancelled_by
            else text_of(job_state.get("reason") if isinstance(job_state, dict) else ""),
            exec_host="" if nodes == "None assigned" else first_exec_host(nodes),
            exit_code=_accounting_exit_code(job.get("exit_code"), state),
            submitted_at=_epoch((job.get("time") or {}).get("submission")),
        )


def parse_partition_loads(partitions: dict, nodes: dict) -> list[PartitionLoad]:
    """Every partition of `GET /slurm/<version>/partitions`, with the resources of its nodes
    from `GET /slurm/<version>/nodes`."""
    states = {
        str(p.get("name")): next(
            iter(words(p.get("state") or (p.get("partition") or {}).get("state"))), ""
        ).lower()
        for p in partitions.get("partitions") or []
        if p.get("name")
    }
    loads = {
        name: dict.fromkeys(
            ("cpus_idle", "cpus_total", "gpus_idle", "gpus_total", "nodes_idle", "nodes_total"), 0
        )
        for name in states
    }
    for node in nodes.get("nodes") or []:
        # v0.0.38: a state and its state_flags; v0.0.40+: one list, the base state first.
        state_words = words(node.get("state")) + words(node.get("state_flags"))
        state = state_words[0].lower() if state_words else ""
        usable = state in ("idle", "mixed") and not UNAVAILABLE_NODE_FLAGS & set(state_words)
        cpus, gpus = number(node.get("cpus")) or 0, gpu_count(text_of(node.get("gres")))
        idle_gpus = max(0, gpus - gpu_count(text_of(node.get("gres_used")))) if usable else 0
        for name in node.get("partitions") or []:
            load = loads.get(name)
            if load is None:
                continue
            load["cpus_total"] += cpus
            idle = number(node.get("idle_cpus", node.get("alloc_idle_cpus")))
            load["cpus_idle"] += (idle or 0) if usable else 0
            load["gpus_total"] += gpus
            load["gpus_idle"] += idle_gpus
            load["nodes_total"] += 1
            load["nodes_idle"] += usable and state == "idle"
    return [PartitionLoad(name=name, state=states[name], **load) for name, load in loads.items()]


def parse_queued_jobs(answer: dict) -> list[QueuedJob]:
    """Every pending and running job of `GET /slurm/<version>/jobs`, the pending ones in the
    order Slurm would start them: highest priority, then earliest submitted."""
    pending: list[tuple[tuple[int, int, Any], QueuedJob]] = []
    running: list[tuple[tuple[int, int, Any], QueuedJob]] = []
    for job in answer.get("jobs") or []:
        state = STATES.get(_state_name(job.get("job_state")), JobState.UNKNOWN)
        if state not in (JobState.PENDING, JobState.RUNNING):
            continue
        queued = QueuedJob(
            str(job.get("job_id", "")),
            tuple(str(job.get("partition") or "").split(",")),
            state is JobState.PENDING,
        )
        order = (
            -(number(job.get("priority")) or 0),
            number(job.get("submit_time")) or 0,
            job["job_id"],
        )
        (pending if queued.pending else running).append((order, queued))
    pending.sort(key=lambda entry: entry[0])
    return [job for _order, job in pending + running]
