"""Operator-wide state that is not in the resources: the API client and the cluster clients."""

from __future__ import annotations

import asyncio
import json

from .clients import SchedulerClient, make_client
from .kube import Kube


class Registry:
    #: The API client, set by the startup handler before any other handler runs.
    kube: Kube

    def __init__(self) -> None:
        self._clients: dict[str, tuple[str, SchedulerClient]] = {}
        self._closing: set[asyncio.Future] = set()
        # Notebooks kopf's index still lists though the API server said they are gone: kopf
        # learns of a deletion only from its watch, and one that happens while the watch lists
        # again (after a "resource version too old", e.g. during a deletion storm) is never
        # reported. Uids are never reused, so this only ever filters ghosts.
        self.gone: set[str] = set()

    def client(self, name: str, spec: dict) -> SchedulerClient:
        """The client for a cluster's current spec; rebuilt when the admin edits the spec."""
        key = json.dumps(spec, sort_keys=True, default=str)
        cached = self._clients.get(name)
        if cached is None or cached[0] != key:
            if cached is not None:  # e.g. an SSH connection to a login node no longer used
                closing = asyncio.ensure_future(cached[1].close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            cached = (key, make_client(name, spec, getattr(self, "kube", None)))
            self._clients[name] = cached
        return cached[1]

    async def forget(self, name: str) -> None:
        """A deleted cluster's client goes, with its connection."""
        cached = self._clients.pop(name, None)
        if cached is not None:
            await cached[1].close()

    async def close(self) -> None:
        for _key, client in self._clients.values():
            await client.close()
        self._clients.clear()


registry = Registry()
