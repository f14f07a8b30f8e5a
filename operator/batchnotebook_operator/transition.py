"""What a round writes about a notebook: a status patch with its Events (Transition), and the
endings the operator itself decides (a Failed notebook, a route withdrawn)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from batchnotebook_api.status import ConditionType, Phase, Reason, condition
from batchnotebook_api.times import timestamp

Event = tuple[str, str, str]  # (type, reason, message)

# Phases in which the hub may route to the job's host and port (Starting: a report may arrive).
ROUTED_PHASES = (Phase.STARTING, Phase.READY, Phase.STOPPING)

# A waiting notebook's place in its partition's queue, from the last availability snapshot.
QUEUE_PLACE_FIELDS = ("queuePosition", "queueLength", "queuePartition")
NOT_IN_QUEUE = dict.fromkeys(QUEUE_PLACE_FIELDS)


@dataclass
class Transition:
    """A status patch plus the events that tell the story."""

    status: dict = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    cancel_job: bool = False  # the operator ends the notebook: its job must not run on

    def __bool__(self) -> bool:
        return bool(self.status)


def changed(status: dict, wanted: dict) -> dict:
    return {k: v for k, v in wanted.items() if status.get(k) != v}


def worth_writing(status: dict, wanted: dict) -> dict:
    """A None removes a field: worth writing only where the status has it."""
    return {k: v for k, v in wanted.items() if v is not None or status.get(k) is not None}


def ended_by_operator(
    status: dict,
    reason: Reason,
    message: str,
    event: str,
    generation: int | None,
    now: dt.datetime,
) -> Transition:
    """The operator, not the scheduler, ends a notebook as Failed, and says why."""
    conditions = condition(
        status.get("conditions", []), ConditionType.READY, False, reason, message, generation, now
    )
    return Transition(
        {
            "phase": Phase.FAILED.value,
            "message": message,
            "finishedAt": timestamp(now),
            "conditions": conditions,
        }
        | worth_writing(status, NOT_IN_QUEUE),
        [("Warning", reason, event)],
    )


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
