"""A server's deletion survives an API server restart. Found by the chaos campaign: the hub
stopped a server while the API server restarted, the spawner's delete raised, JupyterHub swallowed
the error and forgot the server, and its BatchNotebook and job ran on for nobody."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiException

from batchnotebook_spawner import BatchNotebookSpawner, notebooks

LOG = logging.getLogger("test")


def missing(name: str) -> ApiException:
    """The API server's 404 for an object that does not exist."""
    error = ApiException(status=404, reason="Not Found")
    error.body = json.dumps({"kind": "Status", "reason": "NotFound", "details": {"name": name}})
    return error


class ApiServer:
    """Deletions as the API server answers them: the first `down` calls find it restarting."""

    def __init__(self, down: int = 0, answer: Exception | None = None) -> None:
        self.down = down
        self.answer = answer
        self.calls: list[tuple] = []
        self.deleted: list[str] = []
        self.secret_owner = "old-uid"

    async def delete_namespaced_custom_object(self, *args, body=None) -> None:
        self.calls.append((args, body))
        if self.down:
            self.down -= 1
            raise aiohttp.ClientConnectorError(
                SimpleNamespace(ssl=None, host="127.0.0.1", port=6443),  # type: ignore[arg-type]
                ConnectionRefusedError("connection refused"),
            )
        if self.answer:
            raise self.answer
        self.deleted.append(args[-1])

    async def read_namespaced_secret(self, name: str, namespace: str) -> SimpleNamespace:
        owners = [SimpleNamespace(uid=self.secret_owner)]
        return SimpleNamespace(metadata=SimpleNamespace(uid="secret-uid", owner_references=owners))

    async def delete_namespaced_secret(self, name: str, namespace: str, body=None) -> None:
        self.deleted.append(name)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(notebooks, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(notebooks, "LAST_RETRY", 0.02)


async def test_a_deletion_waits_out_an_api_server_restart():
    api = ApiServer(down=3)
    assert await notebooks.delete_until_taken(api, api, "hub", "nb-a", "nb-a-env", 30, LOG)
    assert len(api.calls) == 4 and api.deleted == ["nb-a", "nb-a-env"]


async def test_a_deletion_gives_up_only_after_its_deadline(caplog):
    api = ApiServer(down=10**6)
    assert not await notebooks.delete_until_taken(api, api, "hub", "nb-a", "nb-a-env", 0.1, LOG)
    assert len(api.calls) >= 3 and not api.deleted
    assert "gave up deleting nb-a" in caplog.text


@pytest.mark.parametrize("status", [403, 422])
async def test_a_refusal_is_not_retried(status):
    api = ApiServer(answer=ApiException(status=status))
    with pytest.raises(ApiException):
        await notebooks.delete_until_taken(api, api, "hub", "nb-a", "nb-a-env", 30, LOG)
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ApiException(status=503), True),
        (ApiException(status=429), True),
        (missing("nb-a"), False),
        (ApiException(status=404), True),  # a restarted API server without our resource type
        (ApiException(status=403), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ValueError("a bug"), False),
    ],
)
def test_what_counts_as_unanswered(error, expected):
    assert notebooks.unanswered(error) is expected


async def test_a_uid_precondition_spares_a_notebook_made_since():
    """The sweeper deletes the notebook it saw, never a new server's of the same name."""
    api = ApiServer(answer=ApiException(status=409, reason="Precondition failed: UID"))
    api.secret_owner = "new-uid"
    await notebooks.delete_notebook(api, api, "hub", "nb-a", "nb-a-env", uid="old-uid")
    assert api.calls[0][1] == {"preconditions": {"uid": "old-uid"}}
    assert api.deleted == []  # nor the new server's Secret


async def test_a_new_servers_secret_stays_when_the_old_notebook_is_gone():
    """The old notebook went already (404) and a new start has made its Secret but not yet its
    notebook: the Secret is the new server's, not the old notebook's."""
    api = ApiServer(answer=missing("nb-a"))
    api.secret_owner = "new-uid"
    await notebooks.delete_notebook(api, api, "hub", "nb-a", "nb-a-env", uid="old-uid")
    assert api.deleted == []
    api.secret_owner = "old-uid"
    await notebooks.delete_notebook(api, api, "hub", "nb-a", "nb-a-env", uid="old-uid")
    assert api.deleted == ["nb-a-env"]


async def test_a_404_without_a_name_is_no_deletion():
    """Right after a restart the API server answers 404 for our resource type itself."""
    api = ApiServer(answer=ApiException(status=404))
    assert not await notebooks.delete_until_taken(api, api, "hub", "nb-a", "nb-a-env", 0.1, LOG)
    assert not api.deleted


def spawner_on(api: ApiServer, monkeypatch) -> BatchNotebookSpawner:
    monkeypatch.setattr("batchnotebook_spawner.spawner.load_config", lambda **_: None)
    spawner = BatchNotebookSpawner(user=SimpleNamespace(name="alice"), namespace="hub")
    monkeypatch.setattr(BatchNotebookSpawner, "custom", property(lambda _: api))
    monkeypatch.setattr(BatchNotebookSpawner, "core", property(lambda _: api))

    async def cached() -> dict | None:
        name = spawner.resource_name
        ended = {"phase": "Failed", "exitCode": 3, "message": "walltime"}
        return None if name in api.deleted else {"metadata": {"name": name}, "status": ended}

    monkeypatch.setattr(spawner, "notebook", cached)
    return spawner


async def test_stop_during_an_api_server_restart_still_deletes_the_notebook(monkeypatch):
    api = ApiServer(down=4)
    spawner = spawner_on(api, monkeypatch)
    await spawner.stop()  # JupyterHub forgets the server whatever stop() does
    assert api.deleted == [spawner.resource_name, spawner.secret_name]


async def test_poll_keeps_an_ended_server_the_hub_must_still_stop(monkeypatch):
    """An ended server whose notebook could not be deleted is not reported ended: the hub would
    never call stop(). It stays the hub's until a later poll() or its stop() deletes it."""
    api = ApiServer(down=1)
    spawner = spawner_on(api, monkeypatch)
    assert await spawner.poll() is None
    assert await spawner.poll() == 3
    assert api.deleted == [spawner.resource_name, spawner.secret_name]


@pytest.mark.parametrize("missing_type", [False, True])
async def test_only_a_404_that_names_the_notebook_says_it_is_gone(missing_type):
    error = ApiException(status=404) if missing_type else missing("nb-a")

    class Custom:
        async def get_namespaced_custom_object(self, *_args):
            raise error

    if missing_type:
        with pytest.raises(ApiException):
            await notebooks.read_notebook(Custom(), "hub", "nb-a")
    else:
        assert await notebooks.read_notebook(Custom(), "hub", "nb-a") is None
