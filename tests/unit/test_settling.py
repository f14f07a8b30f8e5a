"""Fewer writes and queries where nothing a user sees changes: a far-off expected start that the
scheduler nudges is kept; a job's port report brings the cluster's next round forward, once."""

from __future__ import annotations

import asyncio
import datetime as dt

from batchnotebook_api.times import now, timestamp
from batchnotebook_operator.poller import next_round, wanting_a_round
from batchnotebook_operator.queue import kept_estimate


def in_hours(hours: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)


def test_a_nudged_far_off_estimate_is_kept_and_a_real_move_is_written():
    written = timestamp(in_hours(10))
    assert kept_estimate(written, in_hours(9.5), now()) == written  # 30 min on a 10 h wait: kept
    moved = in_hours(5)
    assert kept_estimate(written, moved, now()) == timestamp(
        moved
    )  # 5 h earlier: the user must know
    soon = timestamp(in_hours(0.1))
    assert kept_estimate(soon, in_hours(0.1) + dt.timedelta(seconds=90), now()) != soon  # > 1 min
    assert kept_estimate(None, moved, now()) == timestamp(moved)
    assert kept_estimate(written, None, now()) is None


NOTEBOOKS = [
    {"uid": "a", "status": {"phase": "Queued", "reportedPort": 8888}},
    {"uid": "b", "status": {"phase": "Ready", "reportedPort": 8888}},
    {"uid": "c", "status": {"phase": "Starting"}},
    {"uid": "d", "status": {"phase": "Cancelled", "reportedPort": 1}},
]


def ended() -> list[dict]:
    """Notebooks whose launcher said Jupyter exited: just now (e, f) or a minute ago (g)."""
    just_now = timestamp(dt.datetime.now(dt.UTC))
    a_minute_ago = timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    return [
        {"uid": "e", "status": {"phase": "Ready", "reportedPort": 1, "endReportedAt": just_now}},
        {"uid": "f", "status": {"phase": "Completed", "endReportedAt": just_now}},
        {"uid": "g", "status": {"phase": "Stopping", "endReportedAt": a_minute_ago}},
    ]


def test_reported_but_not_ready_and_just_ended_but_not_over_want_a_round():
    assert wanting_a_round(NOTEBOOKS + ended(), now()) == {("a", "reported"), ("e", "ended")}


class Stopped:
    """kopf's DaemonStopped, never stopped: wait() sleeps, and counts."""

    def __init__(self) -> None:
        self.waits = 0

    def __bool__(self) -> bool:
        return False

    async def wait(self, seconds: float) -> None:
        self.waits += 1
        await asyncio.sleep(seconds)


async def test_a_report_brings_the_round_forward_once():
    loop = asyncio.get_running_loop()
    brought_forward: set[tuple[str, str]] = set()
    first = Stopped()
    await next_round(first, lambda: NOTEBOOKS, loop.time() + 30, loop.time(), brought_forward)
    assert brought_forward == {("a", "reported")} and first.waits == 0  # at once, not in 30 s
    # The same report does not hurry the next round: it waits until the round is due.
    second = Stopped()
    await next_round(second, lambda: NOTEBOOKS, loop.time() + 0.3, loop.time(), brought_forward)
    assert second.waits >= 1
    # A notebook that is gone is forgotten.
    await next_round(Stopped(), lambda: [], loop.time(), loop.time(), brought_forward)
    assert brought_forward == set()


async def test_an_end_brings_rounds_forward_until_the_scheduler_says_how_it_ended():
    loop = asyncio.get_running_loop()
    brought_forward: set[tuple[str, str]] = set()
    notebooks = ended()
    for _ in range(2):  # the scheduler may still say "running" in the first round: ask again
        rounds = Stopped()
        await next_round(rounds, lambda: notebooks, loop.time() + 30, loop.time(), brought_forward)
        assert rounds.waits == 0
    just_now = notebooks[0]["status"]["endReportedAt"]
    over = [{"uid": "e", "status": {"phase": "Cancelled", "endReportedAt": just_now}}]
    waited = Stopped()
    await next_round(waited, lambda: over, loop.time() + 0.3, loop.time(), brought_forward)
    assert waited.waits >= 1
