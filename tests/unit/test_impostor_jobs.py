"""A job is known by the id recorded at its submission and its owner, never by its name alone:
any cluster user can name a job `bnb-<uid>` after reading another's tag in the queue (issue 11)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable

import pytest
from fake_clients import QueueOnlyClient

from batchnotebook_operator import rounds
from batchnotebook_operator.handlers.notebooks import recorded_job
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.registry import registry
from batchnotebook_operator.schedulers import BACKENDS

TAG = "bnb-0b1c2d3e-0000-4000-8000-000000000001"
CREATED = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def job(job_id: str, user: str, state: JobState, minutes_after_creation: int = 1) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        state=state,
        raw_state=state.value.upper(),
        name=TAG,
        user=user,
        exec_host="node01" if state is JobState.RUNNING else "",
        submitted_at=CREATED + dt.timedelta(minutes=minutes_after_creation),
    )


class Scheduler:
    """Every user's jobs, as a queue listing and accounting show them, in listing order."""

    def __init__(self, queue: list[JobStatus], accounting: list[JobStatus] = ()) -> None:
        self.queue, self.remembered = queue, list(accounting)
        self.cancelled: list[str] = []


class FakeClient(QueueOnlyClient):
    """The client contract over a fake scheduler: query by tag, answers by job id."""

    name = "c"

    def __init__(self, scheduler: Scheduler) -> None:
        self.site = scheduler
        self.scheduler = BACKENDS["slurm"]()
        self.turns = asyncio.Semaphore(1)

    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        wanted = set(tags)
        return {j.job_id: j for j in self.site.queue if j.name in wanted}

    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
        return [j for j in self.site.remembered if j.job_id in job_ids or j.name in tags]

    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        self.site.cancelled += list(job_ids)


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict] = []
        self.events: list[tuple] = []

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patches.append(status)
        return True

    async def event(self, _ref: dict, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@pytest.fixture
def kube(monkeypatch):
    fake = FakeKube()
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    return fake


def alices_notebook(phase: str = "Ready", job_id: str = "41") -> dict:
    return {
        "name": "nb-alice",
        "namespace": "ns",
        "uid": "uid-alice",
        "cluster": "c",
        "generation": 1,
        "unixUser": "alice",
        "status": {
            "phase": phase,
            "jobId": job_id,
            "jobName": TAG,
            "execHost": "node01",
            "lastSeenAt": "2026-12-01T09:05:00Z",
        },
    }


async def test_an_impostor_listed_after_alices_job_does_not_decide_her_phase(kube):
    # bob named his job after alice's and cancelled it: the scheduler lists it after hers.
    site = Scheduler([job("41", "alice", JobState.RUNNING), job("99", "bob", JobState.CANCELLED)])
    still_active = await rounds.poll(FakeClient(site), {}, [alices_notebook()])
    assert still_active == 1
    assert all(patch.get("phase") != "Cancelled" for patch in kube.patches)
    assert not kube.events


async def test_an_impostor_does_not_keep_an_ended_notebook_running(kube):
    # alice's Jupyter exited and her job ended; bob's namesake still runs on her node.
    site = Scheduler(
        [job("99", "bob", JobState.RUNNING)],
        accounting=[job("41", "alice", JobState.FINISHED)],
    )
    await rounds.poll(FakeClient(site), {}, [alices_notebook()])
    assert kube.patches[-1]["phase"] == "Completed"


async def test_a_recycled_job_id_of_another_owner_is_not_the_notebooks_job(kube):
    # Years later the scheduler's ids wrapped: id 41 is now bob's.
    site = Scheduler([job("41", "bob", JobState.RUNNING)], accounting=[])
    await rounds.poll(FakeClient(site), {}, [alices_notebook(phase="Queued")])
    assert all(
        "execHost" not in patch and patch.get("phase") != "Starting" for patch in kube.patches
    )


async def test_adoption_after_a_crash_takes_only_the_owners_job_submitted_after_creation():
    bobs = job("99", "bob", JobState.RUNNING)
    alices_older = job("40", "alice", JobState.RUNNING, minutes_after_creation=-2 * 24 * 60)
    client = FakeClient(Scheduler([bobs, alices_older]))
    assert await client.find(TAG, "alice", CREATED) is None  # nothing to adopt: submit anew

    alices = job("41", "alice", JobState.PENDING)
    client = FakeClient(Scheduler([bobs, alices, alices_older]))
    assert (await client.find(TAG, "alice", CREATED)).job_id == "41"

    remembered = FakeClient(Scheduler([bobs], accounting=[job("41", "alice", JobState.FINISHED)]))
    assert (await remembered.find(TAG, "alice", CREATED)).job_id == "41"


async def test_cancel_goes_to_the_recorded_job_not_the_impostor():
    site = Scheduler([job("41", "alice", JobState.RUNNING), job("99", "bob", JobState.RUNNING)])
    client = FakeClient(site)
    found = await recorded_job(client, {"jobId": "41"}, TAG, "alice", CREATED)
    assert found.job_id == "41"
    # Without a recorded id (deleted before the status write), only alice's own job counts.
    site.queue.reverse()
    assert (await recorded_job(client, {}, TAG, "alice", CREATED)).job_id == "41"
    site.queue = [job("99", "bob", JobState.RUNNING)]
    assert await recorded_job(client, {}, TAG, "alice", CREATED) is None


def test_a_job_of_the_tag_may_be_the_notebooks_only_if_its_owner_and_time_fit():
    assert job("41", "alice", JobState.RUNNING).may_be_of(TAG, "alice", CREATED)
    assert not job("99", "bob", JobState.RUNNING).may_be_of(TAG, "alice", CREATED)
    assert not job("41", "", JobState.RUNNING).may_be_of(TAG, "alice", CREATED)
    stale = job("40", "alice", JobState.RUNNING, minutes_after_creation=-2 * 24 * 60)
    assert not stale.may_be_of(TAG, "alice", CREATED)
    # A login node west of the operator prints its local time: hours "before" creation is fine.
    west = job("41", "alice", JobState.RUNNING, minutes_after_creation=-6 * 60)
    assert west.may_be_of(TAG, "alice", CREATED)
    assert not job("41", "alice", JobState.RUNNING).may_be_of("bnb-other", "alice", CREATED)
