"""Pure logic: what a notebook's status becomes when the scheduler reports on its job.

Kept free of I/O so that every transition is unit-tested; the poller only applies the result.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from .model import ENDED_PHASE, JobState, JobStatus, Phase, QueuePlace, condition, timestamp
from .texts import duration_text, parse_timestamp, seconds_between

# Both the queue and accounting must have forgotten a job for this long before it counts as gone:
# accounting lags the queue by a few seconds.
VANISHED_AFTER_SECONDS = 120
# A cluster's walltimeWarningSeconds when it sets none (the CRD's default).
DEFAULT_WALLTIME_WARNING_SECONDS = 600
# The job log's tail in a failure message: enough to show a traceback's end, bounded for the status.
LOG_TAIL_CHARACTERS = 2000

# Phases in which the hub may route to the job's host and port (Starting: a report may arrive).
ROUTED_PHASES = (Phase.STARTING, Phase.READY, Phase.STOPPING)

# A waiting notebook's place in its partition's queue, from the last availability snapshot.
QUEUE_PLACE_FIELDS = ("queuePosition", "queueLength", "queuePartition")
NOT_IN_QUEUE = dict.fromkeys(QUEUE_PLACE_FIELDS)


def queue_place(status: dict, places: dict[str, QueuePlace]) -> Transition:
    """A waiting notebook's place in its queue, as a snapshot has it: written only when it
    changed, removed when the scheduler gives the job no place. Other notebooks are left alone
    (leaving Queued clears it)."""
    phase = status.get("phase") or Phase.PENDING.value
    if phase not in (Phase.PENDING.value, Phase.QUEUED.value) or not status.get("jobId"):
        return Transition()
    place = places.get(status["jobId"])
    wanted = NOT_IN_QUEUE
    if place:
        wanted = {
            "queuePosition": place.position,
            "queueLength": place.length,
            "queuePartition": place.partition,
        }
    return Transition(_changed(status, _worth_writing(status, wanted)))


def queue_wait_exceeded(
    status: dict,
    max_wait_seconds: int,
    now: dt.datetime,
    generation: int | None = None,
) -> Transition:
    """A Queued notebook that waited longer than its profile allows fails (its job is cancelled
    by the caller); any other notebook is left alone."""
    waited = seconds_between(status.get("submittedAt"), now)
    if status.get("phase") != Phase.QUEUED.value or waited <= max_wait_seconds:
        return Transition()
    reason = status.get("schedulerReason")
    message = (
        f"waited {duration_text(waited)} in the queue"
        + (f" ({reason})" if reason else "")
        + f", the profile allows {duration_text(max_wait_seconds)}; cancelled"
    )
    return replace(
        ended_by_operator(
            status, "MaxQueueWait", message, f"job {status.get('jobId')}: {message}", generation
        ),
        cancel_job=True,
    )


def needs_log_tail(status: dict, transition: Transition) -> bool:
    """A job that failed now: its log says why (a job that crashed at once may never have been
    seen running, so any active phase counts; a job that never ran leaves no log to read)."""
    was_active = not Phase(status.get("phase") or Phase.PENDING.value).terminal
    return was_active and transition.status.get("phase") == Phase.FAILED.value


def with_log_tail(transition: Transition, tail: str) -> Transition:
    """The failure message followed by the end of the job's log, bounded in length."""
    tail = tail.strip()
    if not tail:
        return transition
    if len(tail) > LOG_TAIL_CHARACTERS:
        tail = "…" + tail[-LOG_TAIL_CHARACTERS:]
    message = f"{transition.status['message']}; the job's log ends with:\n{tail}"
    return Transition({**transition.status, "message": message}, transition.events)


def job_output_path(output: str, job_id: str) -> str:
    """The job's log as the scheduler wrote it: `%j` is the job id, relative paths start in the
    user's home (where the transport runs commands as the user)."""
    return output.replace("%j", job_id)


@dataclass
class Transition:
    """A status patch plus the events that tell the story."""

    status: dict = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    cancel_job: bool = False  # the operator ends the notebook: its job must not run on

    def __bool__(self) -> bool:
        return bool(self.status)


def rewrite_host(host: str, rules: dict | None) -> str:
    suffix = (rules or {}).get("domainSuffix")
    if suffix and host and "." not in host and ":" not in host:  # short names, not IPv6
        return host + suffix
    return host


def same_host(exec_host: str, reported: str, rules: dict | None) -> bool:
    """Whether a report names the scheduler's host: full names after hostRewrite, so `node01`
    with domainSuffix `.cluster.example` is `node01.cluster.example`, and never
    `node01.attacker.example`."""

    def full(host: str) -> str:
        return rewrite_host(host.strip(), rules).lower().rstrip(".")

    return bool(exec_host and reported) and full(exec_host) == full(reported)


def notebook_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _changed(status: dict, wanted: dict) -> dict:
    return {k: v for k, v in wanted.items() if status.get(k) != v}


def _worth_writing(status: dict, wanted: dict) -> dict:
    """A None removes a field: worth writing only where the status has it."""
    return {k: v for k, v in wanted.items() if v is not None or status.get(k) is not None}


def ready_fields(status: dict, generation: int | None, host_rules: dict | None = None) -> dict:
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


def walltime_warning(
    ends_at: str, conditions: list[dict], warning_seconds: int, generation: int | None
) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Once a Ready notebook is within warning_seconds of its walltime's end: the WalltimeEnding
    condition and one Warning event."""
    left = (parse_timestamp(ends_at) - dt.datetime.now(dt.UTC)).total_seconds()
    already = any(
        c.get("type") == "WalltimeEnding" and c.get("status") == "True" for c in conditions
    )
    if already or warning_seconds <= 0 or left > warning_seconds:
        return conditions, []
    message = (
        f"the walltime ends at {ends_at} (in {duration_text(left)}): the server will be stopped "
        "shortly before, save your work"
    )
    conditions = condition(
        conditions, "WalltimeEnding", True, "WalltimeEnding", message, generation
    )
    return conditions, [("Warning", "WalltimeEnding", message)]


def kept_estimate(written: str | None, estimate: dt.datetime | None) -> str | None:
    """The expected start to write for a waiting job: Slurm's backfill moves a far-off estimate
    on every cycle (hours ahead, by an hour at a time), and writing each move rewrote every waiting
    notebook's status every minute.  The written estimate stays unless the new one differs by
    more than a quarter of the wait it announces (and a minute)."""
    if estimate is None or written is None:
        return timestamp(estimate) if estimate else None
    before = parse_timestamp(written)
    wait = (min(before, estimate) - dt.datetime.now(dt.UTC)).total_seconds()
    if abs((estimate - before).total_seconds()) <= max(60.0, wait / 4):
        return written
    return timestamp(estimate)


def host_refused(
    status: dict,
    conditions: list[dict],
    job: JobStatus,
    host: str,
    reason: str,
    generation: int | None,
) -> tuple[dict, list[dict], list[tuple[str, str, str]]]:
    """What a running job whose execution host the cluster's execHosts policy refuses makes of
    its notebook (the fields, conditions and events from_job writes): it stays Starting without
    an execHost (so neither a poll nor a report can build a URL), the Ready condition says why,
    and one Warning event tells it (again only if the host or reason changes)."""
    message = (
        f"the scheduler says job {job.job_id} runs on {host}, which this cluster does not "
        f"allow ({reason}); not routing there"
    )
    previous = next((c for c in conditions if c.get("type") == "Ready"), {})
    conditions = condition(conditions, "Running", True, "JobRunning", f"on {host}", generation)
    conditions = condition(conditions, "Ready", False, "HostRefused", message, generation)
    fields = NOT_IN_QUEUE | {
        "phase": Phase.STARTING.value,
        "execHost": None,
        "port": None,
        "url": None,
        "startedAt": status.get("startedAt") or timestamp(),
        "expectedStartTime": None,
        "message": message,
    }
    events = []
    if (previous.get("reason"), previous.get("message")) != ("HostRefused", message):
        events.append(("Warning", "HostRefused", message))
    return fields, conditions, events


def from_job(
    status: dict,
    job: JobStatus,
    host_rules: dict | None = None,
    generation: int | None = None,
    walltime_warning_seconds: int = DEFAULT_WALLTIME_WARNING_SECONDS,
    refused_hosts: dict[str, str] | None = None,
) -> Transition:
    """The transition a notebook makes when the scheduler reports `job`. `refused_hosts`: the
    execution hosts (after hostRewrite) the cluster's execHosts policy refuses, and why."""
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
    host = rewrite_host(job.exec_host, host_rules)
    refusal = (refused_hosts or {}).get(host)  # never routed to, never written (hosts.py)
    if phase.terminal or job.state is JobState.UNKNOWN:
        wanted.pop("lastSeenAt")
    elif refusal and job.state is JobState.RUNNING and phase.before_ready:
        # A notebook before Ready has no URL yet: a refused host keeps it from getting one.
        fields, conditions, events = host_refused(
            status, conditions, job, host, refusal, generation
        )
        wanted |= fields
    elif job.state is JobState.PENDING and phase in ROUTED_PHASES and job.suspended:
        # Stopped where it runs: its process keeps the port, and the route stays with it.
        wanted["message"] = f"job {job.job_id} is suspended ({job.raw_state}), Jupyter waits"
    elif job.state is JobState.PENDING and phase in ROUTED_PHASES:
        # Requeued, evicted or rerun: the host and port the hub routes to are free for anyone on
        # that node to bind, so the route goes now, with the job (a new start would be a new
        # server the user did not ask for).
        message = (
            f"the scheduler put job {job.job_id} back in the queue ({job.raw_state}"
            + (f": {job.reason}" if job.reason else "")
            + "); the server is stopped, start a new one"
        )
        return replace(
            ended_by_operator(status, "JobRequeued", message, message, generation),
            cancel_job=True,
        )
    elif job.state is JobState.PENDING:
        expected = kept_estimate(status.get("expectedStartTime"), job.expected_start)
        wanted |= {
            "phase": Phase.QUEUED.value,
            "expectedStartTime": expected,
            "message": f"queued: {job.reason or 'waiting'}"
            + (f", expected to start {expected}" if expected else ""),
        }
        if status.get("schedulerReason") != job.reason and job.reason:
            events.append(("Normal", "Queued", f"job {job.job_id} waits: {job.reason}"))
    elif job.state in (JobState.RUNNING, JobState.COMPLETING):
        if refusal:
            host = ""  # a Ready notebook keeps the host its URL was built from
        wanted |= NOT_IN_QUEUE | {
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
            ready = ready_fields(
                {**status, **wanted, "conditions": conditions}, generation, host_rules
            )
            if ready:
                conditions = ready.pop("conditions")
                wanted |= ready
                events.append(("Normal", "Ready", ready["message"]))
        ends_at = walltime_end(job, wanted["startedAt"], status.get("walltimeSeconds"))
        if ends_at:
            wanted["endsAt"] = ends_at
            if wanted.get("phase", phase) == Phase.READY.value:
                conditions, warnings = walltime_warning(
                    ends_at, conditions, walltime_warning_seconds, generation
                )
                events += warnings
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
        warned = any(
            c.get("type") == "WalltimeEnding" and c.get("status") == "True" for c in conditions
        )
        if warned and new_phase is Phase.COMPLETED:
            message = f"the server was stopped before its walltime ended ({status.get('endsAt')})"
        wanted |= NOT_IN_QUEUE | {
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
    patch = _changed(status, _worth_writing(status, wanted))
    if patch.keys() - {"lastSeenAt"} or conditions != status.get("conditions", []):
        patch["conditions"] = conditions
    else:
        patch.pop("lastSeenAt", None)  # nothing else changed: no write
    return Transition(patch, events)


def withdrawn_route(status: dict, ending: Transition) -> Transition:
    """What stays of an ending the operator could not carry out yet (the cancel did not reach the
    scheduler; the next round tries again, Stopping being a routed phase): the hub stops routing
    to the job at once, as a server that was Ready and is no longer."""
    if Phase(status.get("phase") or Phase.PENDING.value) not in ROUTED_PHASES:
        return Transition()
    return Transition(
        {
            "phase": Phase.STOPPING.value,
            "url": None,
            "port": None,
            "message": ending.status["message"],
            "conditions": ending.status["conditions"],
        }
    )


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
    return ended_by_operator(status, "JobNotFound", message, message, generation)


def ended_by_operator(
    status: dict, reason: str, message: str, event: str, generation: int | None
) -> Transition:
    """The operator, not the scheduler, ends a notebook as Failed, and says why."""
    conditions = condition(
        status.get("conditions", []), "Ready", False, reason, message, generation
    )
    return Transition(
        {
            "phase": Phase.FAILED.value,
            "message": message,
            "finishedAt": timestamp(),
            "conditions": conditions,
        }
        | _worth_writing(status, NOT_IN_QUEUE),
        [("Warning", reason, event)],
    )
