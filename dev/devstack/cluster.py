"""A whole Kubernetes of the local stack: the control plane (controlplane.py) with a real
node beside it (node.py), in one state directory."""

from __future__ import annotations

from pathlib import Path

from . import controlplane
from .controlplane import ControlPlane
from .deploy import stop_login_node
from .network import NodeNetwork
from .node import Node
from .pki import ensure_certificate
from .processes import log

# Which state directory holds each network index: two stacks on one index would share (and tear
# down) one namespace and cgroup tree. On tmpfs, so a claim goes with a reboot, as namespaces do.
CLAIMS = Path("/run/batchnotebook-nodes")


def node_index(state: Path) -> int:
    """The stack's network index: the one kept in the state directory unless another stack has
    claimed it meanwhile, else the first one nobody claims or uses; claimed for this stack."""
    saved = state / "node" / "index"
    if saved.exists() and claimant(int(saved.read_text())) in (None, state):
        return claim(int(saved.read_text()), state)
    for index in range(1, 251):
        if claimant(index) is None and not NodeNetwork(index).exists():
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(f"{index}\n")
            return claim(index, state)
    raise RuntimeError("all 250 node networks are taken: stop a stack (python -m devstack down)")


def claimant(index: int) -> Path | None:
    """The state directory that claims `index`: a claim holds while that directory keeps it."""
    try:
        owner = Path((CLAIMS / str(index)).read_text().strip())
        kept = (owner / "node" / "index").read_text().strip()
    except OSError:
        return None
    return owner if kept == str(index) else None


def claim(index: int, state: Path) -> int:
    CLAIMS.mkdir(mode=0o755, exist_ok=True)
    (CLAIMS / str(index)).write_text(f"{state}\n")
    return index


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
    ControlPlane(state, api_port, node.network.host_address).start()
    node.start()
    log("cluster", f"KUBECONFIG={state / 'kubeconfig'}; NodePorts on {node.network.node_address}")
    return node


def down(state: Path) -> None:
    state = state.resolve()
    saved = state / "node" / "index"
    if saved.exists():
        node = Node(state, 0, NodeNetwork(int(saved.read_text())))
        stop_login_node(node)  # what deploy.install_operator started, if it still runs (pid files)
        # The namespace and cgroups of the index are this stack's only if it claims them (or,
        # made before claims, its node still runs): another stack may have taken the index.
        owner = claimant(node.network.index)
        if owner == state or (owner is None and node.running()):
            node.stop()
    controlplane.stop(state)
