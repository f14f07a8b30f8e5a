"""Operator-wide state that is not in the resources: the API client and the cluster clients."""

from __future__ import annotations

import json

from .client import ClusterClient
from .kube import Kube


class Registry:
    def __init__(self) -> None:
        self.kube: Kube | None = None
        self._clients: dict[str, tuple[str, ClusterClient]] = {}

    def client(self, name: str, spec: dict) -> ClusterClient:
        """The client for a cluster's current spec; rebuilt when the admin edits the spec."""
        key = json.dumps(spec, sort_keys=True, default=str)
        cached = self._clients.get(name)
        if cached is None or cached[0] != key:
            cached = (key, ClusterClient(name, spec))
            self._clients[name] = cached
        return cached[1]


registry = Registry()
