"""The spawner refuses before it creates anything (issue 11): the hub user `root` (400), and a
user's server beyond max_queued_per_user waiting in a queue (429)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tornado import web

from batchnotebook_spawner import BatchNotebookSpawner
from batchnotebook_spawner.queue_cap import queue_refusal, waiting_notebooks

CLUSTER = {"profiles": [{"name": "small", "defaults": {"cpus": 1}}]}
OPTIONS = {"cluster": "local", "profile": "small"}


class Api:
    """Core and custom objects APIs that record what would be created."""

    def __init__(self) -> None:
        self.created: list[str] = []

    async def create_namespaced_secret(self, namespace: str, body: dict) -> None:
        self.created.append(f"Secret {body['metadata']['name']}")

    async def create_namespaced_custom_object(self, *args) -> dict:
        self.created.append("BatchNotebook")
        return {"metadata": {"uid": "uid-new"}}

    async def delete_namespaced_secret(self, *args) -> None:
        pass

    async def get_cluster_custom_object(self, *args) -> dict:
        return {"spec": CLUSTER}


def notebook(user: str, server: str, phase: str | None, deleting: bool = False) -> dict:
    meta = {"name": f"nb-{user}-{server}", "namespace": "hub"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T09:00:00Z"
    return {
        "metadata": meta,
        "spec": {"hubUser": user, "serverName": server},
        "status": {"phase": phase} if phase else {},
    }


@pytest.fixture
def make_spawner(monkeypatch):
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    monkeypatch.setattr(BatchNotebookSpawner, "_starting", {})
    api = Api()
    monkeypatch.setattr(BatchNotebookSpawner, "core", property(lambda _self: api))
    monkeypatch.setattr(BatchNotebookSpawner, "custom", property(lambda _self: api))
    listed: dict[str, dict] = {}

    def make(user: str = "alice", server: str = "") -> BatchNotebookSpawner:
        spawner = BatchNotebookSpawner(namespace="hub")
        spawner.user = SimpleNamespace(name=user, groups=[])
        spawner.orm_spawner = SimpleNamespace(name=server, server=None)  # read by .name
        spawner.user_options = dict(OPTIONS)

        async def reflector():
            return SimpleNamespace(resources=listed, get=lambda _ns, name: None)

        async def notebook_now():
            return None

        spawner.reflector = reflector
        spawner.notebook = notebook_now
        return spawner

    make.api, make.listed = api, listed
    return make


async def test_the_root_hub_user_gets_a_400_and_nothing_is_created(make_spawner):
    spawner = make_spawner(user="root")
    with pytest.raises(web.HTTPError) as refused:
        await spawner.start()
    assert refused.value.status_code == 400
    assert "never run as root" in refused.value.log_message % refused.value.args
    assert make_spawner.api.created == []


def test_only_servers_waiting_in_a_queue_count():
    listed = [
        notebook("alice", "a", None),
        notebook("alice", "b", "Queued"),
        notebook("alice", "c", "Starting"),
        notebook("alice", "d", "Ready"),
        notebook("alice", "e", "Failed"),
        notebook("alice", "f", "Queued", deleting=True),
        notebook("bob", "g", "Queued"),
    ]
    assert waiting_notebooks(listed, "alice") == {"nb-alice-a", "nb-alice-b", "nb-alice-c"}
    assert queue_refusal(2, 3) is None and queue_refusal(100, 0) is None
    assert queue_refusal(3, 3) == (
        "you already have 3 servers waiting in a queue (at most 3); "
        "stop one or wait until one has started"
    )
    assert queue_refusal(1, 1).startswith("you already have 1 server waiting")


async def test_the_fourth_queued_server_is_refused_and_nothing_is_created(make_spawner):
    for server in ("a", "b", "c"):
        make_spawner.listed[f"hub/nb-alice-{server}"] = notebook("alice", server, "Queued")
    make_spawner.listed["hub/nb-bob-x"] = notebook("bob", "x", "Queued")
    fourth = make_spawner(server="d")
    with pytest.raises(web.HTTPError) as refused:
        await fourth.start()
    assert refused.value.status_code == 429
    message = refused.value.log_message % refused.value.args
    assert "you already have 3 servers waiting in a queue (at most 3)" in message
    assert make_spawner.api.created == []
    # bob's one queued server does not hold him back; cap 0 lifts the cap
    assert await make_spawner(user="bob", server="y")._take_queue_place() is None
    uncapped = make_spawner(server="e")
    uncapped.max_queued_per_user = 0
    assert await uncapped._take_queue_place() is None


async def test_simultaneous_starts_count_before_their_notebooks_exist(make_spawner):
    # Three starts under way (nothing in the watch yet): the fourth request is refused.
    for server in ("a", "b", "c"):
        await make_spawner(server=server)._take_queue_place()
    with pytest.raises(web.HTTPError) as refused:
        await make_spawner(server="d")._take_queue_place()
    assert refused.value.status_code == 429
    # A server starting again (its leftover replaced) does not count against itself.
    assert await make_spawner(server="a")._take_queue_place() is None
