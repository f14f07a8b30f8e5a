"""A Ready notebook whose job goes back to the queue (Slurm REQUEUED, HTCondor eviction, a PBS
rerun) loses its route at once: the host and port the hub routes to are free for anyone on that
node to bind (issue 11)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client import ApiException

from batchnotebook_api.times import now
from batchnotebook_operator import rounds
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.follow import from_job
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.registry import registry
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_spawner import BatchNotebookSpawner

READY = {
    "phase": "Ready",
    "jobId": "41",
    "jobName": "bnb-x",
    "execHost": "node01",
    "port": 8888,
    "url": "http://node01:8888",
    "readyAt": "2026-12-01T09:00:00Z",
    "conditions": [],
}
REQUEUED = JobStatus("41", JobState.PENDING, "REQUEUED", "bnb-x", "alice", reason="BeginTime")


@pytest.mark.parametrize("phase", ["Starting", "Ready", "Stopping"])
def test_a_routed_notebook_whose_job_is_requeued_fails_and_its_job_is_cancelled(phase):
    transition = from_job({**READY, "phase": phase}, REQUEUED, now())
    assert transition.status["phase"] == "Failed"
    assert transition.cancel_job
    assert "back in the queue (REQUEUED: BeginTime)" in transition.status["message"]
    ready = [c for c in transition.status["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False" and ready[0]["reason"] == "JobRequeued"
    assert [reason for _, reason, _ in transition.events] == ["JobRequeued"]


def test_a_queued_notebook_waits_as_before():
    transition = from_job({**READY, "phase": "Queued"}, REQUEUED, now())
    assert "phase" not in transition.status and not transition.cancel_job


class Client:
    name = "c"

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable
        self.cancelled: list[tuple[list[str], str]] = []

    async def cancel(self, job_ids: list[str], user: str) -> None:
        if not self.reachable:
            raise SchedulerUnavailable("Socket timed out")
        self.cancelled.append((job_ids, user))


class Kube:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patches.append(status)
        return True

    async def event(self, *_: object) -> None:
        pass


@pytest.fixture
def kube(monkeypatch):
    fake = Kube()
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    return fake


def notebook() -> dict:
    return {
        "name": "nb",
        "namespace": "ns",
        "uid": "u",
        "cluster": "c",
        "unixUser": "alice",
        "generation": 1,
        "status": READY,
    }


async def test_the_requeued_job_is_cancelled_and_the_notebook_fails(kube):
    client = Client(reachable=True)
    transition = from_job(READY, REQUEUED, now())
    await rounds.carry_out(client, {}, notebook(), transition, transition, asyncio.Semaphore(1))
    assert client.cancelled == [(["41"], "alice")]
    assert kube.patches[-1]["phase"] == "Failed"


async def test_a_cancel_that_does_not_reach_the_scheduler_still_withdraws_the_route(kube):
    client = Client(reachable=False)
    transition = from_job(READY, REQUEUED, now())
    await rounds.carry_out(client, {}, notebook(), transition, transition, asyncio.Semaphore(1))
    patch = kube.patches[-1]
    assert patch["phase"] == "Stopping" and patch["url"] is None and patch["port"] is None
    # Stopping is still routed: the next round sees the requeue again and retries the cancel.
    assert from_job({**READY, **patch}, REQUEUED, now()).cancel_job


@pytest.mark.parametrize(
    ("status", "gone"),
    [
        ({"phase": "Ready", "readyAt": "t"}, None),
        ({"phase": "Stopping", "readyAt": "t"}, 1),
        ({"phase": "Queued", "readyAt": "t"}, 1),
        ({"phase": "Queued"}, None),
    ],
)
async def test_the_hub_hears_at_once_that_a_ready_server_is_no_longer(monkeypatch, status, gone):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner(user=SimpleNamespace(name="alice"))

    async def the_notebook() -> dict:
        return {"metadata": {}, "status": status}

    deleted = []

    async def delete() -> bool:
        deleted.append(True)
        return True

    monkeypatch.setattr(spawner, "notebook", the_notebook)
    monkeypatch.setattr(spawner, "_delete_notebook", delete)
    assert await spawner.poll() == gone
    # A server the hub hears has stopped is one it will neither poll nor stop again: its
    # BatchNotebook goes now (the operator cancels a requeued job), not never.
    assert deleted == ([True] if gone is not None else [])


@pytest.mark.parametrize(
    ("backend", "raw"),
    [
        ("slurm", "SUSPENDED"),
        ("slurm", "STOPPED"),
        ("lsf", "SSUSP"),
        ("lsf", "USUSP"),
        ("sge", "s"),
        ("sge", "T"),
        ("pbspro", "S"),
        ("torque", "U"),
        ("htcondor", "Suspended"),
        ("moab", "Suspended"),
    ],
)
def test_a_suspended_job_keeps_its_route(backend, raw):
    """Suspended where it runs (gang scheduling, LSF load thresholds): its process still holds
    the port, so it is not a requeue and the server is not stopped."""
    job = BACKENDS[backend]().marked(JobStatus("41", JobState.PENDING, raw, "bnb-x", "alice"))
    transition = from_job(READY, job, now())
    assert job.suspended and not transition.cancel_job
    assert "phase" not in transition.status and "url" not in transition.status
    assert "suspended" in transition.status["message"]


@pytest.mark.parametrize(
    ("backend", "raw"),
    [("slurm", "REQUEUED"), ("slurm", "PENDING"), ("lsf", "PEND"), ("sge", "qw")],
)
def test_back_in_the_queue_is_not_suspended(backend, raw):
    job = BACKENDS[backend]().marked(JobStatus("41", JobState.PENDING, raw, "bnb-x", "alice"))
    assert not job.suspended and from_job(READY, job, now()).cancel_job


async def test_a_restarted_hub_learns_the_address_once_the_queued_job_runs(monkeypatch):
    """The hub restarted while the job waited in the queue: get_url() waits for the report
    rather than hand back the placeholder the hub would wait on and then cancel."""
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner(user=SimpleNamespace(name="alice"))
    spawner.server = SimpleNamespace(url="http://vm:59497/user/alice/")
    rounds = iter(
        [
            {"phase": "Queued"},
            {"phase": "Starting", "jobId": "7"},
            {"phase": "Ready", "url": "http://vm:38071/user/alice/", "readyAt": "t"},
        ]
    )
    asked = []

    async def the_notebook() -> dict:
        asked.append(1)
        return {"metadata": {}, "status": next(rounds)}

    async def no_wait(_seconds: float) -> None:
        return None

    monkeypatch.setattr(spawner, "notebook", the_notebook)
    monkeypatch.setattr("batchnotebook_spawner.spawner.asyncio.sleep", no_wait)
    assert await spawner.get_url() == "http://vm:38071/user/alice/"
    assert len(asked) == 3


@pytest.mark.parametrize(
    "notebook",
    [None, {"metadata": {}, "status": {"phase": "Failed"}},
     {"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Queued"}}],
)  # fmt: skip
async def test_an_ended_server_keeps_the_hubs_address(monkeypatch, notebook):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner(user=SimpleNamespace(name="alice"))
    spawner.server = SimpleNamespace(url="http://vm:59497/user/alice/")

    async def the_notebook() -> dict | None:
        return notebook

    monkeypatch.setattr(spawner, "notebook", the_notebook)
    assert await spawner.get_url() == "http://vm:59497/user/alice/"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"metadata": {}, "status": {"phase": "Ready", "readyAt": "t"}}, None),
        (None, 0),
        (ConnectionRefusedError("the API server is restarting"), None),
        # Not "gone" either: the hub would forget the server, and stop() nothing.
        (ApiException(status=403, reason="Forbidden"), None),
        (ApiException(status=404, reason="our resource type is not registered yet"), None),
    ],
)
async def test_a_notebook_missing_from_the_cache_is_asked_of_the_api_server(
    monkeypatch, answer, expected
):
    """Found by the chaos campaign: around an API server restart the watch's cache missed a
    running notebook, poll() said the server was gone, and the hub, which then calls no stop(),
    left the BatchNotebook and its job behind. Only the API server may say "gone"."""
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner(user=SimpleNamespace(name="alice"))

    async def not_cached() -> None:
        return None

    async def read() -> dict | None:
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(spawner, "notebook", not_cached)
    monkeypatch.setattr(spawner, "_read_notebook", read)
    assert await spawner.poll() == expected
