"""When a cluster's rounds happen, and what the cluster's status says of the last one.

`ClusterPoller` holds what one cluster's rounds remember between them (when the version and the
availability were last asked, the SchedulerReachable condition, the reports that already brought a
round forward); the kopf daemon in handlers/clusters.py only runs `round` and `next_round` in a
loop. rounds.py does the work of a round, backlog.py that of the cluster's cancel backlog.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import kopf

from batchnotebook_api.status import Condition, ConditionType, Phase, Reason, condition
from batchnotebook_api.times import now, seconds_between, timestamp

from .backlog import PendingCancel, settle
from .clients import SchedulerClient
from .errors import SchedulerUnavailable
from .registry import registry
from .rounds import poll, snapshot

log = logging.getLogger(__name__)
MIN_SECONDS_BETWEEN_POLLS = 1.0  # between two rounds' starts, however many reports come
ENDED_FOLLOW_SECONDS = 10  # how long a job's word that Jupyter exited keeps rounds coming
TERMINAL_PHASES = frozenset(phase.value for phase in Phase if phase.terminal)
REPORT_CHECK_SECONDS = 0.1  # how often a waiting cluster looks for reports that need a round
VERSION_CHECK_SECONDS = 3600
DEFAULT_AVAILABILITY_INTERVAL_SECONDS = 60
DEFAULT_POLL_INTERVAL_SECONDS = 10


@dataclass
class ClusterPoller:
    """One cluster's rounds. Times are time.monotonic() seconds."""

    name: str
    conditions: list[Condition]
    version_asked_at: float = float("-inf")  # the first round asks, however young the clock
    snapshot_taken_at: float = float("-inf")
    #: Reports that already brought a round forward (see wanting_a_round).
    brought_forward: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def from_status(cls, name: str, status: dict) -> ClusterPoller:
        # Without the "Reachable" condition of 0.1.0, now SchedulerReachable as on a notebook.
        kept = [c for c in status.get("conditions", []) if c.get("type") != "Reachable"]
        return cls(name, kept)

    async def round(
        self,
        client: SchedulerClient,
        spec: dict,
        generation: int | None,
        notebooks: list[dict],
        backlog: list[PendingCancel],
    ) -> dict:
        """One round over `notebooks` and the cancel `backlog`: the cluster's status update (its
        lastPollDurationSeconds says how long the round took). The backlog is written apart
        (backlog.change), never in the update."""
        started = time.monotonic()
        update: dict = {"observedGeneration": generation}
        answered = False
        try:
            if started - self.version_asked_at > VERSION_CHECK_SECONDS:
                update["schedulerVersion"] = await client.version()
                if client.api_version:
                    update["apiVersion"] = client.api_version
                self.version_asked_at = started
            update["activeJobs"] = await poll(client, spec, notebooks)
            answered = True
            self.reachable(
                True, Reason.ANSWERED, "the scheduler answered the last query", generation
            )
        except SchedulerUnavailable as error:
            self.reachable(False, Reason.NO_ANSWER, str(error)[:500], generation)
        except Exception:  # one bad round must not stop following the cluster
            log.exception("cluster %s: poll failed", self.name)
        if answered and backlog:
            try:
                await settle(registry.kube, client, self.name, backlog)
            except SchedulerUnavailable as error:  # the poll asks nothing without active notebooks
                answered = False
                self.reachable(False, Reason.NO_ANSWER, str(error)[:500], generation)
            except Exception:  # the next round tries again
                log.exception("cluster %s: the cancel backlog failed", self.name)
        # Its own cadence, and never in a round the scheduler was silent: a snapshot changes
        # neither a notebook's phase nor the SchedulerReachable condition.
        every = float(
            spec.get("availabilityIntervalSeconds", DEFAULT_AVAILABILITY_INTERVAL_SECONDS)
        )
        if answered and every > 0 and started - self.snapshot_taken_at >= every:
            self.snapshot_taken_at = started
            try:
                update |= await snapshot(client, notebooks)
            except Exception:  # a snapshot must not stop following the cluster
                log.exception("cluster %s: availability snapshot failed", self.name)
        return update | {
            "lastPollTime": timestamp(now()),
            "lastPollDurationSeconds": round(time.monotonic() - started, 3),
            "conditions": self.conditions,
        }

    def reachable(
        self, answered: bool, reason: Reason, message: str, generation: int | None
    ) -> None:
        self.conditions = condition(
            self.conditions,
            ConditionType.SCHEDULER_REACHABLE,
            answered,
            reason,
            message,
            generation,
            now(),
        )

    async def next_round(
        self,
        stopped: kopf.DaemonStopped,
        notebooks: Callable[[], Iterable[dict]],
        spec: dict,
        started: float,
        took: float,
    ) -> None:
        """Wait for the round after the one that started at `started` and took `took` seconds."""
        interval = float(spec.get("pollIntervalSeconds", DEFAULT_POLL_INTERVAL_SECONDS))
        await next_round(
            stopped,
            notebooks,
            started + max(interval, took + MIN_SECONDS_BETWEEN_POLLS),
            started + MIN_SECONDS_BETWEEN_POLLS,
            self.brought_forward,
        )


def wanting_a_round(notebooks: Iterable[dict], moment: dt.datetime) -> set[tuple[str, str]]:
    """(uid, why) of each notebook whose job said something only the scheduler can confirm:
    "reported", its port came before any poll saw the job run (or while a round was writing the
    host), so only the next round's word on the execution host stands between it and Ready;
    "ended", Jupyter exited, so the job is ending and the round tells how (for ENDED_FOLLOW_SECONDS:
    the scheduler may still show the job running, or completing, for a moment)."""
    wanted = set()
    for n in notebooks:  # ten times a second over every notebook: kept cheap
        status = n["status"]
        phase = status.get("phase", "Pending")
        if phase in TERMINAL_PHASES:
            continue
        if status.get("reportedPort") and phase != Phase.READY.value:
            wanted.add((n["uid"], "reported"))
        ended = status.get("endReportedAt")
        if ended and seconds_between(ended, moment) < ENDED_FOLLOW_SECONDS:
            wanted.add((n["uid"], "ended"))
    return wanted


async def next_round(
    stopped: kopf.DaemonStopped,
    notebooks: Callable[[], Iterable[dict]],
    due: float,
    earliest: float,
    brought_forward: set[tuple[str, str]],
) -> None:
    """Wait until the next round is due, or bring it forward (not before `earliest`) when a job
    said something only a round can confirm (wanting_a_round): Jupyter usually listens within the
    interval that starts the job, and its Ready would otherwise wait for the rest of that
    interval; an ended job would show as running for as long.  A port report brings one round
    forward, so one that never gets a host costs one extra query, not one a second; an end, a
    round a second until the scheduler says how the job ended (a few seconds at most). Reports
    arriving together share the round."""
    # Forget the done and the deleted.
    brought_forward.intersection_update(wanting_a_round(notebooks(), now()))
    while not stopped and (moment := time.monotonic()) < due:
        if moment >= earliest:
            waiting = wanting_a_round(notebooks(), now()) - brought_forward
            if waiting:
                brought_forward |= {want for want in waiting if want[1] == "reported"}
                return
        await stopped.wait(min(REPORT_CHECK_SECONDS, due - moment))
