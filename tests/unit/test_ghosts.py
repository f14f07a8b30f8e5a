"""Notebooks kopf's index still lists after the API server deleted them (a deletion it missed while
its watch listed again) are recognised as gone: they no longer hold a cluster or cost a round."""

import asyncio

import kopf
import pytest

from batchnotebook_operator import rounds
from batchnotebook_operator.handlers import clusters
from batchnotebook_operator.registry import registry
from batchnotebook_operator.transition import Transition


class FakeKube:
    """The API server as far as these handlers ask it: which notebooks exist, by uid."""

    def __init__(self, existing: dict[str, str]) -> None:
        self.existing = existing  # name -> uid
        self.patched: list[str] = []

    async def notebook(self, namespace: str, name: str) -> dict | None:
        uid = self.existing.get(name)
        return None if uid is None else {"metadata": {"uid": uid}}

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patched.append(name)
        return name in self.existing

    async def event(self, *args) -> None:
        raise AssertionError("no event about a notebook that is gone")


def indexed(name: str, uid: str) -> dict:
    return {"name": name, "namespace": "ns", "uid": uid, "cluster": "c", "status": {}}


@pytest.fixture
def kube(monkeypatch):
    fake = FakeKube({"live": "uid-live", "renamed": "uid-new"})
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    monkeypatch.setattr(registry, "gone", set())
    return fake


async def test_a_status_write_that_finds_no_notebook_marks_it_gone(kube):
    index = {"c": [indexed("live", "uid-live"), indexed("ghost", "uid-ghost")]}
    transition = Transition({"phase": "Cancelled"}, [("Normal", "Cancelled", "job ended")])
    await rounds.apply_transition(indexed("ghost", "uid-ghost"), transition, asyncio.Semaphore(1))
    assert registry.gone == {"uid-ghost"}
    assert [n["name"] for n in clusters.followed(index, "c")] == ["live"]


async def test_a_cluster_is_held_only_by_notebooks_the_api_server_still_has(kube):
    ghosts = {"c": [indexed("ghost", "uid-ghost"), indexed("renamed", "uid-old")]}
    await clusters.keep_while_in_use(
        name="c", spec={}, status={}, notebooks_by_cluster=ghosts
    )  # may go
    assert registry.gone == {"uid-ghost", "uid-old"}  # a namesake is not the indexed notebook

    held = {"c": [*ghosts["c"], indexed("live", "uid-live")]}
    with pytest.raises(kopf.TemporaryError, match=r"still use this cluster: ns/live$"):
        await clusters.keep_while_in_use(name="c", spec={}, status={}, notebooks_by_cluster=held)


def test_ghosts_the_index_has_dropped_are_forgotten(kube):
    registry.gone.update({"uid-ghost", "uid-dropped"})
    clusters.forget_the_forgotten({"c": [indexed("ghost", "uid-ghost")]})
    assert registry.gone == {"uid-ghost"}
