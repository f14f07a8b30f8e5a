"""The sweeper: deletes the BatchNotebooks whose hub server no longer exists, so that the
operator cancels their jobs.

JupyterHub forgets a server whose stop() failed (it swallows the error), and a hub killed while a
server stops forgets it too: nobody would ever stop that notebook's job. The spawner retries its
deletions (notebooks.delete_until_taken); this is the net under it. It runs beside the hub, as
jupyterhub-idle-culler does, with a token that may only list users and read their servers:

    JUPYTERHUB_API_TOKEN=... python -m batchnotebook_spawner.sweep \\
        --url http://127.0.0.1:8081/hub/api --namespace jupyterhub-notebooks

A notebook goes only once two rounds in a row, EVERY seconds apart, found it without a server in
the hub; its server's name is the one the spawner recorded in its spec, and the deletion names
its uid, so a server started again under the same name keeps its new notebook.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
from kubespawner.clients import load_config, shared_client

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION, own_secret_name

from .notebooks import delete_notebook, unanswered

SPAWNER_LABEL = "app.kubernetes.io/managed-by=batchnotebook-spawner"
PAGE = 200
ROUND_TIMEOUT = 120.0  # seconds
log = logging.getLogger("batchnotebook-sweeper")


def server_of(notebook: dict) -> tuple[str, str]:
    spec = notebook.get("spec", {})
    return spec.get("hubUser", ""), spec.get("serverName", "")


def strays(notebooks: Iterable[dict], servers: set[tuple[str, str | None]]) -> set[str]:
    """The uids of the notebooks whose server the hub does not have (pending or ready), and
    that are not being deleted already. (user, None) stands for all of that user's servers."""
    return {
        notebook["metadata"]["uid"]
        for notebook in notebooks
        if server_of(notebook) not in servers
        and (server_of(notebook)[0], None) not in servers
        and not notebook["metadata"].get("deletionTimestamp")
    }


def active_servers(users: Iterable[dict]) -> set[tuple[str, str | None]]:
    """(user, server name) of every server in a page of the hub's users (state=active). A user
    listed there has a server in the hub's database; one shown without any (the hub has not
    loaded them) keeps all their notebooks."""
    servers: set[tuple[str, str | None]] = set()
    for user in users:
        names: list[str | None] = list(user.get("servers") or {}) or [None]
        servers |= {(user["name"], name) for name in names}
    return servers


async def hub_servers(session: aiohttp.ClientSession, url: str) -> set[tuple[str, str | None]]:
    """Every server the hub has, pending or ready, read page by page."""
    servers: set[tuple[str, str | None]] = set()
    offset = 0
    while True:
        params = {"state": "active", "offset": str(offset), "limit": str(PAGE)}
        async with session.get(f"{url}/users", params=params) as answer:
            answer.raise_for_status()
            page = await answer.json()
        servers |= active_servers(page["items"])
        following = page["_pagination"].get("next")
        if not following:
            return servers
        offset = following["offset"]


async def user_servers(session: aiohttp.ClientSession, url: str, user: str) -> set[str]:
    """One user's servers, pending or ready, asked again before any is deleted: a user whose
    stop moved the others between two pages may have been left out of the listing."""
    async with session.get(f"{url}/users/{quote(user, safe='')}") as answer:
        if answer.status == 404:
            return set()
        answer.raise_for_status()
        return set((await answer.json()).get("servers") or {})


class Sweeper:
    """One namespace's sweep; `suspects` carries the strays of the round before."""

    def __init__(self, custom: Any, core: Any, session: aiohttp.ClientSession, url: str,
                 namespace: str) -> None:  # fmt: skip
        self.custom, self.core, self.session = custom, core, session
        self.url, self.namespace = url, namespace
        self.suspects: set[str] = set()

    async def round(self) -> list[str]:
        """One round; the names of the notebooks it deleted."""
        listing = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, NOTEBOOKS, label_selector=SPAWNER_LABEL
        )
        notebooks = listing["items"]
        # Read after the list: a server started since then is in it; one whose start began
        # before is in it too (the hub records a server before it calls start()).
        found = strays(notebooks, await hub_servers(self.session, self.url))
        doomed, self.suspects = found & self.suspects, found
        deleted = []
        for notebook in notebooks:
            name, uid = notebook["metadata"]["name"], notebook["metadata"]["uid"]
            user, server = server_of(notebook)
            if uid in doomed and server not in await user_servers(self.session, self.url, user):
                log.warning("deleting %s: the hub has no server %r of %s", name, server, user)
                secret = own_secret_name(name)
                await delete_notebook(self.custom, self.core, self.namespace, name, secret, uid)
                deleted.append(name)
        return deleted

    async def run(self, every: float) -> None:
        while True:
            try:
                # kubernetes_asyncio waits forever on a stalled connection: a round may not.
                await asyncio.wait_for(self.round(), ROUND_TIMEOUT)
            except aiohttp.ClientResponseError as error:
                if error.status < 500:  # a token without list:users and read:servers, say
                    log.error("round skipped: the hub refused (%s %s)", error.status, error)
                else:
                    log.warning("round skipped: %s", error)
            except Exception as error:
                if not unanswered(error):
                    raise
                # Nothing is known this round; the suspects wait for the next.
                log.warning("round skipped: %r", error)
            await asyncio.sleep(every)


async def main(url: str, namespace: str, every: float) -> None:
    load_config()
    headers = {
        "Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
        "Accept": "application/jupyterhub-pagination+json",
    }
    log.info("sweeping %s every %.0f s, against the servers of %s", namespace, every, url)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        sweeper = Sweeper(shared_client("CustomObjectsApi"), shared_client("CoreV1Api"),
                          session, url.rstrip("/"), namespace)  # fmt: skip
        await sweeper.run(every)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m batchnotebook_spawner.sweep",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("JUPYTERHUB_API_URL"),
                        help="the hub's API (default: $JUPYTERHUB_API_URL)")  # fmt: skip
    parser.add_argument("--namespace", required=True, help="the spawner's namespace")
    parser.add_argument("--every", type=float, default=60, help="seconds between rounds")
    parser.add_argument("--tag", help="ignored: names the process (e.g. its stack's state)")
    options = parser.parse_args(argv)
    if not options.url:
        parser.error("--url or $JUPYTERHUB_API_URL is required")
    return options


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = arguments()
    asyncio.run(main(options.url, options.namespace, options.every))
