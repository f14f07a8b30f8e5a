"""How scheduler commands reach a cluster: one module per transport, chosen by connection.type."""

from __future__ import annotations

from ..kube import Kube
from .base import CommandResult, Transport, operator_namespace, with_bin_directory
from .local import LocalTransport
from .ssh import SSHTransport

__all__ = [
    "CommandResult",
    "Transport",
    "make_transport",
    "operator_namespace",
    "with_bin_directory",
]


def make_transport(connection: dict, kube: Kube | None) -> Transport:
    """The transport a BatchCluster's spec.connection asks for."""
    run_as = connection.get("runAsCommand", ["sudo", "-n", "-u", "{user}", "--"])
    timeout = connection.get("commandTimeoutSeconds", 30)
    if connection.get("type") == "ssh":
        return SSHTransport(
            connection["ssh"],
            kube,
            run_as=run_as,
            timeout=timeout,
            environment=connection.get("environment"),
        )
    return LocalTransport(run_as=run_as, timeout=timeout, environment=connection.get("environment"))
