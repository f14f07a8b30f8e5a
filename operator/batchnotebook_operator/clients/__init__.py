"""The clients that reach a BatchCluster's scheduler, and the one its spec asks for."""

from __future__ import annotations

from ..kube import Kube
from .base import SchedulerClient
from .commandline import CommandLineClient
from .slurmrest.client import SlurmRestClient

__all__ = ["SchedulerClient", "make_client"]


def make_client(name: str, spec: dict, kube: Kube | None = None) -> SchedulerClient:
    """The client a BatchCluster's spec asks for: its scheduler's commands over its transport,
    or slurmrestd's API."""
    if spec.get("connection", {}).get("type") == "slurmrest":
        return SlurmRestClient(name, spec, kube)
    return CommandLineClient(name, spec, kube)
