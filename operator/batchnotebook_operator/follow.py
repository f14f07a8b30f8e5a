"""Pure logic: what a notebook's status becomes when the scheduler reports on its job.

Kept free of I/O and of the clock (`now` is an argument) so that every transition is unit-tested;
the cluster's poller only applies the result. `from_job` is the state machine: one function per
state the scheduler reports (queued, running, ended), each returning the fields it wants written.
The words are in messages.py, the host checks in hosts.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from batchnotebook_api.status import (
    Condition,
    ConditionType,
    Phase,
    Reason,
    condition,
    is_true,
)
from batchnotebook_api.times import parse_timestamp, timestamp

from . import messages
from .hosts import notebook_url, rewrite_host, same_host
from .model import ENDED_PHASE, JobState, JobStatus
from .queue import kept_estimate
from .transition import (
    NOT_IN_QUEUE,
    ROUTED_PHASES,
    Event,
    Transition,
    changed,
    ended_by_operator,
    worth_writing,
)

# Both the queue and accounting must have forgotten a job for this long before it counts as gone:
# accounting lags the queue by a few seconds.
VANISHED_AFTER_SECONDS = 120
# A cluster's walltimeWarningSeconds when it sets none (the CRD's default).
DEFAULT_WALLTIME_WARNING_SECONDS = 600


@dataclass
class Change:
    """What one report makes of a notebook, built up by the state's function."""

    wanted: dict
    conditions: list[Condition]
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """A scheduler's word on one notebook's job, and what judging it needs."""

    status: dict
    job: JobStatus
    now: dt.datetime
    generation: int | None = None
    host_rules: dict | None = None
    walltime_warning_seconds: int = DEFAULT_WALLTIME_WARNING_SECONDS

    @property
    def phase(self) -> Phase:
        return Phase(self.status.get("phase") or Phase.PENDING.value)

    def condition(
        self,
        conditions: list[Condition],
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: str,
    ) -> list[Condition]:
        return condition(conditions, type_, status, reason, message, self.generation, self.now)


def ready_fields(
    status: dict, generation: int | None, now: dt.datetime, host_rules: dict | None = None
) -> dict:
    """Fields that make a Starting notebook Ready, if its report matches the scheduler's host.
    The URL is always built from the scheduler's host (execHost), never the report's."""
    host, port = status.get("execHost"), status.get("reportedPort")
    reported = status.get("reportedHost")
    if not (host and port and reported) or not same_host(host, reported, host_rules):
        return {}
    return {
        "phase": Phase.READY.value,
        "port": port,
        "url": notebook_url(host, port),
        "readyAt": status.get("readyAt") or timestamp(now),
        "message": f"Jupyter is ready on {host}:{port}",
        "conditions": condition(
            status.get("conditions", []),
            ConditionType.READY,
            True,
            Reason.JUPYTER_REPORTED,
            f"listening on {host}:{port}",
            generation,
            now,
        ),
    }


def walltime_end(
    job: JobStatus, started_at: str | None, walltime_seconds: int | None
) -> str | None:
    """When the job's walltime ends: the scheduler's own word if it gave one, else its start plus
    the walltime resolved at submission."""
    if job.ends_at:
        return timestamp(job.ends_at)
    if started_at and walltime_seconds:
        return timestamp(parse_timestamp(started_at) + dt.timedelta(seconds=walltime_seconds))
    return None


def walltime_warning(report: Report, ends_at: str, conditions: list[Condition]) -> Change:
    """Once a Ready notebook is within the warning of its walltime's end: the WalltimeEnding
    condition and one Warning event."""
    left = (parse_timestamp(ends_at) - report.now).total_seconds()
    warning = report.walltime_warning_seconds
    if is_true(conditions, ConditionType.WALLTIME_ENDING) or warning <= 0 or left > warning:
        return Change({}, conditions)
    message = messages.walltime_ending(ends_at, left)
    conditions = report.condition(
        conditions, ConditionType.WALLTIME_ENDING, True, Reason.WALLTIME_ENDING, message
    )
    return Change({}, conditions, [("Warning", Reason.WALLTIME_ENDING, message)])


def from_job(
    status: dict,
    job: JobStatus,
    now: dt.datetime,
    host_rules: dict | None = None,
    generation: int | None = None,
    walltime_warning_seconds: int = DEFAULT_WALLTIME_WARNING_SECONDS,
    refused_hosts: dict[str, str] | None = None,
) -> Transition:
    """The transition a notebook makes when the scheduler reports `job`. `refused_hosts`: the
    execution hosts (after hostRewrite) the cluster's execHosts policy refuses, and why."""
    report = Report(status, job, now, generation, host_rules, walltime_warning_seconds)
    phase = report.phase
    conditions = report.condition(
        status.get("conditions", []),
        ConditionType.SCHEDULER_REACHABLE,
        True,
        Reason.ANSWERED,
        "",
    )
    host = rewrite_host(job.exec_host, host_rules)
    refusal = (refused_hosts or {}).get(host)  # never routed to, never written (hosts.py)
    seen = {"schedulerState": job.raw_state, "schedulerReason": job.reason}
    if phase.terminal or job.state is JobState.UNKNOWN:
        change = Change(seen, conditions)
    elif refusal and job.state is JobState.RUNNING and phase.before_ready:
        # A notebook before Ready has no URL yet: a refused host keeps it from getting one.
        change = _host_refused(report, conditions, host, refusal)
    elif job.state is JobState.PENDING and phase in ROUTED_PHASES and job.suspended:
        # Stopped where it runs: its process keeps the port, and the route stays with it.
        change = Change({"message": messages.suspended(job)}, conditions)
    elif job.state is JobState.PENDING and phase in ROUTED_PHASES:
        # Requeued, evicted or rerun: the host and port the hub routes to are free for anyone on
        # that node to bind, so the route goes now, with the job (a new start would be a new
        # server the user did not ask for).
        message = messages.requeued(job)
        ending = ended_by_operator(status, Reason.JOB_REQUEUED, message, message, generation, now)
        return replace(ending, cancel_job=True)
    elif job.state is JobState.PENDING:
        change = _queued(report, conditions)
    elif job.state in (JobState.RUNNING, JobState.COMPLETING):
        change = _running(report, conditions, "" if refusal else host)
    else:
        change = _ended(report, conditions)
    if not (phase.terminal or job.state is JobState.UNKNOWN):
        change.wanted = {**seen, "lastSeenAt": timestamp(now), **change.wanted}
    else:
        change.wanted = {**seen, **change.wanted}
    patch = changed(status, worth_writing(status, change.wanted))
    if patch.keys() - {"lastSeenAt"} or change.conditions != status.get("conditions", []):
        patch["conditions"] = change.conditions
    else:
        patch.pop("lastSeenAt", None)  # nothing else changed: no write
    return Transition(patch, change.events)


def _host_refused(report: Report, conditions: list[Condition], host: str, reason: str) -> Change:
    """A running job whose execution host the cluster's execHosts policy refuses: its notebook
    stays Starting without an execHost (so neither a poll nor a report can build a URL), the Ready
    condition says why, and one Warning event tells it (again only if the host or reason
    changes)."""
    message = messages.host_refused(report.job.job_id, host, reason)
    previous = next((c for c in conditions if c.get("type") == ConditionType.READY), Condition())
    conditions = report.condition(
        conditions, ConditionType.RUNNING, True, Reason.JOB_RUNNING, f"on {host}"
    )
    conditions = report.condition(
        conditions, ConditionType.READY, False, Reason.HOST_REFUSED, message
    )
    wanted = NOT_IN_QUEUE | {
        "phase": Phase.STARTING.value,
        "execHost": None,
        "port": None,
        "url": None,
        "startedAt": report.status.get("startedAt") or timestamp(report.now),
        "expectedStartTime": None,
        "message": message,
    }
    events: list[Event] = []
    if (previous.get("reason"), previous.get("message")) != (Reason.HOST_REFUSED, message):
        events.append(("Warning", Reason.HOST_REFUSED, message))
    return Change(wanted, conditions, events)


def _queued(report: Report, conditions: list[Condition]) -> Change:
    job, status = report.job, report.status
    expected = kept_estimate(status.get("expectedStartTime"), job.expected_start, report.now)
    wanted = {
        "phase": Phase.QUEUED.value,
        "expectedStartTime": expected,
        "message": messages.queued(job, expected),
    }
    events: list[Event] = []
    if status.get("schedulerReason") != job.reason and job.reason:
        events.append(("Normal", "Queued", f"job {job.job_id} waits: {job.reason}"))
    return Change(wanted, conditions, events)


def _running(report: Report, conditions: list[Condition], host: str) -> Change:
    """A running (or completing) job; `host` is empty where the execHosts policy refuses it (a
    Ready notebook keeps the host its URL was built from)."""
    job, status, phase = report.job, report.status, report.phase
    wanted: dict = NOT_IN_QUEUE | {
        "execHost": host or status.get("execHost"),
        "startedAt": status.get("startedAt") or timestamp(report.now),
        "expectedStartTime": None,
    }
    events: list[Event] = []
    if job.state is JobState.COMPLETING:
        wanted |= {"phase": Phase.STOPPING.value, "message": "the job is ending"}
    elif phase in (Phase.PENDING, Phase.QUEUED):
        wanted |= {
            "phase": Phase.STARTING.value,
            "message": f"running on {host}, waiting for Jupyter to start",
        }
        events.append(("Normal", "Running", f"job {job.job_id} runs on {host}"))
        conditions = report.condition(
            conditions, ConditionType.RUNNING, True, Reason.JOB_RUNNING, f"on {host}"
        )
    if phase is not Phase.READY and job.state is JobState.RUNNING:
        ready = ready_fields(
            {**status, **wanted, "conditions": conditions},
            report.generation,
            report.now,
            report.host_rules,
        )
        if ready:
            conditions = ready.pop("conditions")
            wanted |= ready
            events.append(("Normal", "Ready", ready["message"]))
    ends_at = walltime_end(job, wanted["startedAt"], status.get("walltimeSeconds"))
    if ends_at:
        wanted["endsAt"] = ends_at
        if wanted.get("phase", phase) == Phase.READY.value:
            warning = walltime_warning(report, ends_at, conditions)
            conditions = warning.conditions
            events += warning.events
    return Change(wanted, conditions, events)


def _ended(report: Report, conditions: list[Condition]) -> Change:
    job, status = report.job, report.status
    phase = ENDED_PHASE[job.state]
    message = messages.ended(job, phase)
    if is_true(conditions, ConditionType.WALLTIME_ENDING) and phase is Phase.COMPLETED:
        message = messages.stopped_before_walltime(status.get("endsAt"))
    wanted = NOT_IN_QUEUE | {
        "phase": phase.value,
        "finishedAt": status.get("finishedAt") or timestamp(report.now),
        "exitCode": job.exit_code,
        "message": message,
    }
    reason = Reason(phase.value)
    conditions = report.condition(conditions, ConditionType.RUNNING, False, reason, message)
    conditions = report.condition(conditions, ConditionType.READY, False, reason, message)
    kind = "Warning" if phase is Phase.FAILED else "Normal"
    return Change(wanted, conditions, [(kind, phase.value, f"job {job.job_id}: {message}")])


def unreachable(
    status: dict, message: str, now: dt.datetime, generation: int | None = None
) -> Transition:
    """The scheduler did not answer: say so, change nothing else."""
    conditions = condition(
        status.get("conditions", []),
        ConditionType.SCHEDULER_REACHABLE,
        False,
        Reason.NO_ANSWER,
        message[:500],
        generation,
        now,
    )
    if conditions == status.get("conditions", []):
        return Transition()
    return Transition({"conditions": conditions})


def vanished(
    status: dict,
    job_id: str,
    seconds_unseen: float,
    now: dt.datetime,
    generation: int | None = None,
) -> Transition:
    """Neither the queue nor accounting knows the job."""
    if seconds_unseen < VANISHED_AFTER_SECONDS or Phase(status.get("phase", "Pending")).terminal:
        return Transition()
    message = messages.vanished(job_id, seconds_unseen)
    return ended_by_operator(status, Reason.JOB_NOT_FOUND, message, message, generation, now)
