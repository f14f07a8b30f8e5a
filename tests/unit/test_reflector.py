"""The spawner's shared watch never keeps a failure: a first list that failed (an API server
still starting) or a watch that gave up is replaced by a fresh one on the next call."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client import ApiException

from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.reflector import NotebookReflector


@pytest.fixture
def spawner(monkeypatch):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    monkeypatch.setattr("batchnotebook_spawner.reflector.SHARED", {})
    made = BatchNotebookSpawner(namespace="hub", user=SimpleNamespace(name="alice"))
    return made


def listing(monkeypatch, outcomes: list[Exception | None]) -> list[NotebookReflector]:
    """Each new reflector's first list fails or succeeds as `outcomes` say, in order."""
    started: list[NotebookReflector] = []

    async def start(self: NotebookReflector) -> None:
        started.append(self)
        outcome = outcomes.pop(0)
        if outcome is not None:
            self.first_load_future.set_exception(outcome)
            raise outcome
        self.first_load_future.set_result(None)

    monkeypatch.setattr(NotebookReflector, "start", start)
    return started


async def test_a_failed_first_list_is_not_kept(spawner, monkeypatch):
    starting = ApiException(status=429, reason="storage is (re)initializing")
    started = listing(monkeypatch, [starting, None])
    with pytest.raises(ApiException):
        await spawner.reflector()
    second = await spawner.reflector()
    assert len(started) == 2 and second is started[1] and not second.broken
    assert await spawner.reflector() is second  # a working watch is shared, not replaced


async def test_a_watch_that_gave_up_is_replaced(spawner, monkeypatch):
    started = listing(monkeypatch, [None, None])
    first = await spawner.reflector()
    first.on_failure()  # what kubespawner's watch loop calls when it gives up
    assert first.broken
    assert await spawner.reflector() is started[1]


async def test_the_home_page_reads_the_time_left_from_the_shared_watch(spawner, monkeypatch):
    """The hub's home page asks each spawner for batch_time_left: from the namespace's one
    watch, without an API call (a lost watch would leave the page without its column)."""
    monkeypatch.setattr(
        "batchnotebook_spawner.spawner.now", lambda: dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)
    )
    assert spawner.batch_time_left == ""  # no watch yet
    listing(monkeypatch, [None])
    reflector = await spawner.reflector()
    name = spawner.resource_name
    status = {"phase": "Ready", "endsAt": "2026-12-03T10:20:00Z"}
    reflector.resources[f"hub/{name}"] = {"metadata": {"name": name}, "status": status}
    assert spawner.batch_time_left.startswith("1 h 20 min left")
