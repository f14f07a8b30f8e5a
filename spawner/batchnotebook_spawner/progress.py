"""The spawn page's progress events: a notebook's phase as a percentage and a line of text (the
queue's reason, place and expected start while it waits). Pure: `now` is an argument."""

from __future__ import annotations

import datetime as dt

from batchnotebook_api.status import Phase
from batchnotebook_api.texts import progress_message

PROGRESS = {  # phase → (percent, what the user is told while in it)
    Phase.PENDING: (10, "Waiting to submit the job"),
    Phase.QUEUED: (30, "Queued"),
    Phase.STARTING: (60, "Running, Jupyter is starting"),
    Phase.READY: (100, "Ready"),
}


def progress_event(status: dict, now: dt.datetime) -> dict:
    """The event for a notebook's status; its message counts the time waited."""
    phase = Phase(status.get("phase") or "Pending")
    percent, label = PROGRESS.get(phase, (100, phase.value))
    message = progress_message(status, now)
    return {
        "progress": percent,
        "message": f"{label}: {message}".rstrip(": "),
        "phase": phase.value,
        "status": status,
    }
