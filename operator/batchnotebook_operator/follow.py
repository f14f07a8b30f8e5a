"""Pure logic: what a notebook's status becomes when the scheduler reports on its job.

Kept free of I/O so that every transition is unit-tested; the poller only applies the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import ENDED_PHASE, JobState, JobStatus, Phase, condition, timestamp

# Both the queue and accounting must have forgotten a job for this long before it counts as gone:
# accounting lags the queue by a few seconds.
VANISHED_AFTER_SECONDS = 120


@dataclass
class Transition:
    """A status patch plus the events that tell the story."""

    status: dict = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    def __bool__(self) -> bool:
        return bool(self.status)


def short_host(host: str) -> str:
    return host.strip().lower().split(".")[0]


def rewrite_host(host: str, rules: dict | None) -> str:
    suffix = (rules or {}).get("domainSuffix")
    if suffix and host and "." not in host:
        return host + suffix
    return host


def notebook_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def _changed(status: dict, wanted: dict) -> dict:
    return {k: v for k, v in wanted.items() if status.get(k) != v}


def ready_fields(status: dict, generation: int | None) -> dict:
    """Fields that make a Starting notebook Ready, if its report matches the scheduler's host."""
    host, port = status.get("execHost"), status.get("reportedPort")
    reported = status.get("reportedHost")
    if not (host and port and reported) or short_host(host) != short_host(reported):
        return {}
    return {
        "phase": Phase.READY.value,
        "port": port,
        "url": notebook_url(host, port),
        "readyAt": status.get("readyAt") or timestamp(),
        "message": f"Jupyter is ready on {host}:{port}",
        "conditions": condition(
            status.get("conditions", []),
            "Ready",
            True,
            "JupyterReported",
            f"listening on {host}:{port}",
            generation,
        ),
    }


def from_job(
    status: dict, job: JobStatus, host_rules: dict | None = None, generation: int | None = None
) -> Transition:
    """The transition a notebook makes when the scheduler reports `job`."""
    phase = Phase(status.get("phase", Phase.PENDING.value))
    conditions = condition(
        status.get("conditions", []), "SchedulerReachable", True, "Answered", "", generation
    )
    wanted: dict = {
        "schedulerState": job.raw_state,
        "schedulerReason": job.reason,
        "lastSeenAt": timestamp(),
    }
    events: list[tuple[str, str, str]] = []
    if phase.terminal or job.state is JobState.UNKNOWN:
        wanted.pop("lastSeenAt")
    elif job.state is JobState.PENDING:
        expected = timestamp(job.expected_start) if job.expected_start else None
        wanted |= {
            "phase": Phase.QUEUED.value,
            "expectedStartTime": expected,
            "message": f"queued: {job.reason or 'waiting'}"
            + (f", expected to start {expected}" if expected else ""),
        }
        if status.get("schedulerReason") != job.reason and job.reason:
            events.append(("Normal", "Queued", f"job {job.job_id} waits: {job.reason}"))
    elif job.state in (JobState.RUNNING, JobState.COMPLETING):
        host = rewrite_host(job.exec_host, host_rules)
        wanted |= {
            "execHost": host or status.get("execHost"),
            "startedAt": status.get("startedAt") or timestamp(),
            "expectedStartTime": None,
        }
        if job.state is JobState.COMPLETING:
            wanted |= {"phase": Phase.STOPPING.value, "message": "the job is ending"}
        elif phase in (Phase.PENDING, Phase.QUEUED):
            wanted |= {
                "phase": Phase.STARTING.value,
                "message": f"running on {host}, waiting for Jupyter to start",
            }
            events.append(("Normal", "Running", f"job {job.job_id} runs on {host}"))
            conditions = condition(
                conditions, "Running", True, "JobRunning", f"on {host}", generation
            )
        if phase is not Phase.READY and job.state is JobState.RUNNING:
            ready = ready_fields({**status, **wanted, "conditions": conditions}, generation)
            if ready:
                conditions = ready.pop("conditions")
                wanted |= ready
                events.append(("Normal", "Ready", ready["message"]))
    else:  # ended
        new_phase = ENDED_PHASE[job.state]
        detail = job.reason or job.raw_state
        message = {
            Phase.COMPLETED: f"the job ended ({detail})",
            Phase.CANCELLED: f"the job was cancelled ({detail})",
            Phase.FAILED: f"the job failed: {detail}",
        }[new_phase]
        if job.exit_code is not None:
            message += f", exit code {job.exit_code}"
        wanted |= {
            "phase": new_phase.value,
            "finishedAt": status.get("finishedAt") or timestamp(),
            "exitCode": job.exit_code,
            "message": message,
        }
        conditions = condition(conditions, "Running", False, new_phase.value, message, generation)
        conditions = condition(conditions, "Ready", False, new_phase.value, message, generation)
        events.append(
            (
                "Warning" if new_phase is Phase.FAILED else "Normal",
                new_phase.value,
                f"job {job.job_id}: {message}",
            )
        )
    patch = _changed(
        status, {k: v for k, v in wanted.items() if v is not None or status.get(k) is not None}
    )
    if patch.keys() - {"lastSeenAt"} or conditions != status.get("conditions", []):
        patch["conditions"] = conditions
    else:
        patch.pop("lastSeenAt", None)  # nothing else changed: no write
    return Transition(patch, events)


def unreachable(status: dict, message: str, generation: int | None = None) -> Transition:
    """The scheduler did not answer: say so, change nothing else."""
    conditions = condition(
        status.get("conditions", []),
        "SchedulerReachable",
        False,
        "NoAnswer",
        message[:500],
        generation,
    )
    if conditions == status.get("conditions", []):
        return Transition()
    return Transition({"conditions": conditions})


def vanished(
    status: dict, job_id: str, seconds_unseen: float, generation: int | None = None
) -> Transition:
    """Neither the queue nor accounting knows the job."""
    if seconds_unseen < VANISHED_AFTER_SECONDS or Phase(status.get("phase", "Pending")).terminal:
        return Transition()
    message = (
        f"the scheduler no longer knows job {job_id} (not in the queue nor in accounting "
        f"for {int(seconds_unseen)} s)"
    )
    conditions = condition(
        status.get("conditions", []), "Ready", False, "JobNotFound", message, generation
    )
    return Transition(
        {
            "phase": Phase.FAILED.value,
            "message": message,
            "finishedAt": timestamp(),
            "conditions": conditions,
        },
        [("Warning", "JobNotFound", message)],
    )
