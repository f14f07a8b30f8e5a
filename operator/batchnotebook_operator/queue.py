"""A waiting notebook's queue: its place from the availability snapshot, the profile's longest
wait, and the expected start worth writing. Pure: `now` is an argument."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from batchnotebook_api.status import Phase, Reason
from batchnotebook_api.times import parse_timestamp, seconds_between, timestamp

from . import messages
from .model import QueuePlace
from .transition import NOT_IN_QUEUE, Transition, changed, ended_by_operator, worth_writing


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
    return Transition(changed(status, worth_writing(status, wanted)))


def queue_wait_exceeded(
    status: dict, max_wait_seconds: int, now: dt.datetime, generation: int | None = None
) -> Transition:
    """A Queued notebook that waited longer than its profile allows fails (its job is cancelled
    by the caller); any other notebook is left alone."""
    waited = seconds_between(status.get("submittedAt"), now)
    if status.get("phase") != Phase.QUEUED.value or waited <= max_wait_seconds:
        return Transition()
    message = messages.queue_wait_exceeded(waited, status.get("schedulerReason"), max_wait_seconds)
    event = f"job {status.get('jobId')}: {message}"
    ending = ended_by_operator(status, Reason.MAX_QUEUE_WAIT, message, event, generation, now)
    return replace(ending, cancel_job=True)


def kept_estimate(
    written: str | None, estimate: dt.datetime | None, now: dt.datetime
) -> str | None:
    """The expected start to write for a waiting job: Slurm's backfill moves a far-off estimate
    on every cycle (hours ahead, by an hour at a time), and writing each move rewrote every waiting
    notebook's status every minute.  The written estimate stays unless the new one differs by
    more than a quarter of the wait it announces (and a minute)."""
    if estimate is None or written is None:
        return timestamp(estimate) if estimate else None
    before = parse_timestamp(written)
    wait = (min(before, estimate) - now).total_seconds()
    if abs((estimate - before).total_seconds()) <= max(60.0, wait / 4):
        return written
    return timestamp(estimate)
