"""A whole Kubernetes of the local stack: the control plane of dev/controlplane.sh with a real
node beside it (node.py), in one state directory."""

from __future__ import annotations

import os
from pathlib import Path

from .deploy import stop_login_node
from .network import NodeNetwork
from .node import Node
from .paths import REPO
from .pki import ensure_certificate
from .processes import log, run


def node_index(state: Path) -> int:
    """The stack's network index: kept in the state directory once chosen, else the first one
    no other stack's namespace uses."""
    saved = state / "node" / "index"
    if saved.exists():
        return int(saved.read_text())
    for index in range(1, 251):
        if not NodeNetwork(index).exists():
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(f"{index}\n")
            return index
    raise RuntimeError("all 250 node networks are taken: stop a stack (python -m devstack down)")


def controlplane(*args: str | Path, env: dict[str, str] | None = None) -> None:
    run([REPO / "dev" / "controlplane.sh", *args], env={**os.environ, **(env or {})})


def up(state: Path, api_port: int) -> Node:
    """Starts what is not running yet; returns the node, Ready, with CoreDNS serving."""
    state = state.resolve()
    node = Node(state, api_port, NodeNetwork(node_index(state)))
    node.network.create()
    pki = node.dir / "pki"
    # The API server starts with the kubelet client certificate: make it first.
    ensure_certificate(
        pki,
        "apiserver-kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        client=True,
    )
    controlplane(
        "start",
        state,
        str(api_port),
        env={"BATCHNOTEBOOK_NODE_HOST_ADDRESS": node.network.host_address},
    )
    node.start()
    log("cluster", f"KUBECONFIG={state / 'kubeconfig'}; NodePorts on {node.network.node_address}")
    return node


def down(state: Path) -> None:
    state = state.resolve()
    saved = state / "node" / "index"
    if saved.exists():
        node = Node(state, 0, NodeNetwork(int(saved.read_text())))
        stop_login_node(node)  # what deploy.install_operator started, if it still runs
        node.stop()
    controlplane("stop", state)
