"""The sweeper deletes what the hub forgot, and never a server the hub still has."""

from __future__ import annotations

import json
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiException

from batchnotebook_spawner import sweep


def notebook(user: str, server: str, uid: str, deleting: bool = False) -> dict:
    metadata = {"name": f"nb-{user}--{server or 'default'}", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-03T08:00:00Z"
    return {"metadata": metadata, "spec": {"hubUser": user, "serverName": server}}


def test_a_notebook_without_its_hub_server_is_a_stray():
    notebooks = [
        notebook("alice", "", "a"),
        notebook("alice", "gpu", "b"),
        notebook("bob", "", "c"),
        notebook("bob", "old", "d", deleting=True),
    ]
    assert sweep.strays(notebooks, {("alice", ""), ("bob", "gpu")}) == {"b", "c"}


def test_a_user_shown_without_servers_keeps_them_all():
    """A user the hub lists as active but shows no server of (not loaded yet) loses nothing."""
    servers = sweep.active_servers([{"name": "alice", "servers": {}}, {"name": "bob"}])
    assert servers == {("alice", None), ("bob", None)}
    assert sweep.strays([notebook("alice", "x", "a"), notebook("bob", "", "b")], servers) == set()


class Cluster:
    """BatchNotebooks and their Secrets as the API server keeps them, uid preconditions and
    owner references included."""

    def __init__(self, notebooks: list[dict]) -> None:
        self.notebooks = {n["metadata"]["name"]: n for n in notebooks}
        self.secrets = {f"{name}-env": n["metadata"]["uid"] for name, n in self.notebooks.items()}

    async def list_namespaced_custom_object(self, *_args, label_selector: str) -> dict:
        assert label_selector == sweep.SPAWNER_LABEL
        return {"items": list(self.notebooks.values())}

    async def delete_namespaced_custom_object(self, *args, body=None) -> None:
        name = args[-1]
        if name not in self.notebooks:
            error = ApiException(status=404)
            error.body = json.dumps({"details": {"name": name}})
            raise error
        uid = (body or {}).get("preconditions", {}).get("uid")
        if uid and self.notebooks[name]["metadata"]["uid"] != uid:
            raise ApiException(status=409, reason="Precondition failed: UID")
        del self.notebooks[name]

    async def read_namespaced_secret(self, name: str, _namespace: str) -> SimpleNamespace:
        if name not in self.secrets:
            raise ApiException(status=404)
        owners = [SimpleNamespace(uid=self.secrets[name])]
        return SimpleNamespace(metadata=SimpleNamespace(uid=f"{name}-uid", owner_references=owners))

    async def delete_namespaced_secret(self, name: str, _namespace: str, body=None) -> None:
        self.secrets.pop(name, None)


@pytest.fixture
async def hub():
    """A hub API that pages its users two at a time, as JupyterHub's does on request."""
    users: list[dict] = []
    hidden: list[dict] = []  # users a listing's pages missed (others stopped in between)

    async def list_users(request: web.Request) -> web.Response:
        assert request.headers["Accept"] == "application/jupyterhub-pagination+json"
        assert request.query["state"] == "active"
        offset = int(request.query["offset"])
        following = {"offset": offset + 2} if offset + 2 < len(users) else None
        page = {"items": users[offset : offset + 2], "_pagination": {"next": following}}
        return web.json_response(page)

    async def one_user(request: web.Request) -> web.Response:
        found = [u for u in users + hidden if u["name"] == request.match_info["name"]]
        return web.json_response(found[0]) if found else web.json_response({}, status=404)

    app = web.Application()
    app.router.add_get("/hub/api/users", list_users)
    app.router.add_get("/hub/api/users/{name}", one_user)
    async with TestServer(app) as server:
        headers = {"Accept": "application/jupyterhub-pagination+json"}
        async with aiohttp.ClientSession(headers=headers) as session:
            yield users, session, str(server.make_url("/hub/api")), hidden


async def test_every_page_of_the_hubs_users_is_read(hub):
    users, session, url, _ = hub
    users += [{"name": f"u{i}", "servers": {"": {}, f"s{i}": {}}} for i in range(5)]
    servers = await sweep.hub_servers(session, url)
    assert servers == {(f"u{i}", name) for i in range(5) for name in ("", f"s{i}")}


async def test_a_stray_goes_on_its_second_round_and_a_running_server_stays(hub):
    users, session, url, _ = hub
    users.append({"name": "alice", "servers": {"": {}}})
    cluster = Cluster([notebook("alice", "", "a"), notebook("alice", "lost", "b")])
    sweeper = sweep.Sweeper(cluster, cluster, session, url, "hub")
    assert await sweeper.round() == []  # a suspect, not yet a stray
    assert await sweeper.round() == ["nb-alice--lost"]
    assert set(cluster.notebooks) == {"nb-alice--default"}
    assert set(cluster.secrets) == {"nb-alice--default-env"}


async def test_a_server_started_again_keeps_its_new_notebook(hub):
    """Between two rounds the lost server is started again under its name: the new notebook
    (another uid) is no suspect, and the deletion of the old one could not touch it."""
    _, session, url, _ = hub
    cluster = Cluster([notebook("alice", "lost", "old")])
    sweeper = sweep.Sweeper(cluster, cluster, session, url, "hub")
    await sweeper.round()
    cluster.notebooks["nb-alice--lost"] = notebook("alice", "lost", "new")
    assert await sweeper.round() == []
    await sweep.delete_notebook(cluster, cluster, "hub", "nb-alice--lost", "x", uid="old")
    assert cluster.notebooks["nb-alice--lost"]["metadata"]["uid"] == "new"


async def test_a_hub_that_does_not_answer_deletes_nothing(hub):
    _, session, url, _ = hub
    cluster = Cluster([notebook("alice", "", "a")])
    sweeper = sweep.Sweeper(cluster, cluster, session, url + "/nowhere", "hub")
    for _ in range(3):
        with pytest.raises(aiohttp.ClientResponseError):
            await sweeper.round()
    assert set(cluster.notebooks) == {"nb-alice--default"}


def test_the_url_comes_from_the_hub_when_it_starts_the_sweeper(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
    options = sweep.arguments(["--namespace", "notebooks"])
    assert (options.url, options.namespace, options.every) == (
        "http://127.0.0.1:8081/hub/api",
        "notebooks",
        60,
    )


async def test_a_user_the_listing_missed_is_asked_before_anything_is_deleted(hub):
    """Pages are offsets into a list that moves: a user on the next page slips back into the
    one already read when a user before them stops. Their server must not look forgotten."""
    _, session, url, hidden = hub
    hidden.append({"name": "carol", "servers": {"": {}}})
    cluster = Cluster([notebook("carol", "", "c")])
    sweeper = sweep.Sweeper(cluster, cluster, session, url, "hub")
    assert await sweeper.round() == [] and await sweeper.round() == []
    assert set(cluster.notebooks) == {"nb-carol--default"}


@pytest.mark.parametrize("name", ["bob/../alice", "eve?state=inactive", "mallory#x", "ünï cödé"])
async def test_a_hostile_user_name_is_asked_as_itself(hub, name):
    """A hub user name is the user's choice (with many authenticators): quoted whole, it can
    neither ask about another user nor bend the query; that user's server is kept, and another
    user's forgotten one still goes."""
    users, session, url, hidden = hub
    hidden.append({"name": name, "servers": {"": {}}})
    users.append({"name": "alice", "servers": {}})  # alice: active, servers not shown
    cluster = Cluster([notebook(name, "", "h"), notebook("bob", "", "b")])
    sweeper = sweep.Sweeper(cluster, cluster, session, url, "hub")
    await sweeper.round()
    assert await sweeper.round() == ["nb-bob--default"]
    assert [n["spec"]["hubUser"] for n in cluster.notebooks.values()] == [name]
