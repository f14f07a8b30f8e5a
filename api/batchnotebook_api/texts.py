"""What a user reads about a notebook: scheduler reasons in plain words, durations, times of day,
and the spawn page's progress line. Pure: `now` is always an argument."""

from __future__ import annotations

import datetime as dt

from .status import Phase
from .times import parse_timestamp, seconds_between

# Schedulers' reason codes for a waiting job, in the words a user understands.
PLAIN_REASONS = {
    "resources": "waiting for free resources",
    "priority": "other jobs come first",
    "dependency": "waiting for another job",
    "reqnodenotavail": "the requested nodes are not available",
    "partitionnodelimit": "the request exceeds the partition's node limit",
    "partitiontimelimit": "the walltime exceeds the partition's limit",
    "qosmaxcpuperuserlimit": "you use all the CPUs your QOS allows",
    "qosmaxjobsperuserlimit": "you run as many jobs as your QOS allows",
    "assocmaxjobslimit": "your account runs as many jobs as it may",
    "begintime": "waiting for its start time",
    "jobheldadmin": "held by an administrator",
    "jobhelduser": "held",
    "reservation": "waiting for a reservation",
    "nodedown": "a required node is down",
    "licenses": "waiting for licenses",
}


def plain_reason(reason: str) -> str:
    """`Resources` → `waiting for free resources (Resources)`; unknown reasons stay as they are."""
    plain = PLAIN_REASONS.get(reason.strip().lower())
    return f"{plain} ({reason})" if plain else reason


def duration_text(seconds: float) -> str:
    """A duration the way a person says it: `40 s`, `5 min`, `2 h`, `1 h 30 min`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def when_text(stamp: str, now: dt.datetime) -> str:
    """`at 06:00 UTC (in 1 h)`; the date too when it is not today; `any moment now` when due."""
    then = parse_timestamp(stamp).astimezone(dt.UTC)
    clock = then.strftime("%H:%M UTC" if then.date() == now.date() else "%Y-%m-%d %H:%M UTC")
    left = (then - now).total_seconds()
    return f"at {clock} ({f'in {duration_text(left)}' if left > 0 else 'any moment now'})"


def progress_message(status: dict, now: dt.datetime) -> str:
    """What the spawn page says about a notebook: submitted → queued (reason, expected start, time
    waited) → running on host → Jupyter starting → ready."""
    phase = Phase(status.get("phase") or Phase.PENDING.value)
    job = f"job {status['jobId']}" if status.get("jobId") else "the job"
    if phase is Phase.QUEUED and status.get("schedulerState"):  # the scheduler has seen it
        parts = [f"{job} waits in the queue"]
        if status.get("schedulerReason"):
            parts.append(plain_reason(status["schedulerReason"]))
        if status.get("queuePosition"):
            parts.append(
                f"position {status['queuePosition']} of {status.get('queueLength', '?')}"
                + (f" in {status['queuePartition']}" if status.get("queuePartition") else "")
            )
        if status.get("expectedStartTime"):
            parts.append(f"expected to start {when_text(status['expectedStartTime'], now)}")
        parts.append(f"waited {duration_text(seconds_between(status.get('submittedAt'), now))}")
        return ", ".join(parts)
    return status.get("message") or ""
