"""The node's own network namespace, joined to this machine by a veth pair.

containerd, the kubelet, kube-proxy and the node's controllers run inside it, so their bridge,
iptables rules and ports belong to this stack alone: `make dev` and `make test` each have a node
at once, and nothing they do touches the machine's own tables. This machine reaches the node at
`node_address` (NodePorts, the kubelet) and its pods through a route; pods reach this machine (the
API server, the login node's sshd, slurmrestd and the batch jobs on node `vm`) at `host_address`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .processes import run

SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class NodeNetwork:
    """Addresses of stack `index` (1-250): 10.201.<index>.0/24 between this machine and the node,
    10.244.<index>.0/24 for its pods."""

    index: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= 250:
            raise ValueError(f"node network index {self.index} is not between 1 and 250")

    @property
    def netns(self) -> str:
        return f"batchnotebook-{self.index}"

    @property
    def host_address(self) -> str:
        return f"10.201.{self.index}.1"

    @property
    def node_address(self) -> str:
        return f"10.201.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.244.{self.index}.1"

    @property
    def bridge(self) -> str:
        return "cni0"  # inside the node's namespace: no clash with another stack's

    @property
    def host_veth(self) -> str:
        return f"bnbh{self.index}"

    @property
    def node_veth(self) -> str:
        return "eth0"

    def enter(self) -> list[str]:
        """A command prefix that runs a program inside the node's namespace (the network only:
        the node shares this machine's mounts, cgroups and processes, as a host's kubelet does)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    def exists(self) -> bool:
        return Path(f"/run/netns/{self.netns}").exists()

    def create(self) -> None:
        """Creates the namespace, the veth pair, the addresses and routes; idempotent."""
        if not self.exists():
            run(["ip", "netns", "add", self.netns])
        inside = ["ip", "-n", self.netns]
        if run(["ip", "link", "show", self.host_veth], check=False).returncode != 0:
            peer = f"{self.host_veth}p"
            run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", peer])
            run(["ip", "link", "set", peer, "netns", self.netns])
            run([*inside, "link", "set", peer, "name", self.node_veth])
        run(["ip", "addr", "replace", f"{self.host_address}/24", "dev", self.host_veth])
        run(["ip", "link", "set", self.host_veth, "up"])
        run([*inside, "addr", "replace", f"{self.node_address}/24", "dev", self.node_veth])
        run([*inside, "link", "set", self.node_veth, "up"])
        run([*inside, "link", "set", "lo", "up"])
        run([*inside, "route", "replace", "default", "via", self.host_address])
        run(["ip", "route", "replace", self.pod_cidr, "via", self.node_address])
        # The node routes between its pods and this machine, and kube-proxy's rules must see
        # traffic that crosses the pods' bridge.
        sysctl = [*self.enter(), "sysctl", "-q", "-w"]
        run([*sysctl, "net.ipv4.ip_forward=1"])
        run([*sysctl, "net.bridge.bridge-nf-call-iptables=1"], check=False)
        run([*sysctl, "net.ipv4.conf.all.route_localnet=1"])

    def delete(self) -> None:
        """Removes the namespace; its end of the veth pair goes with it, and so do the route and
        this machine's end."""
        run(["ip", "route", "del", self.pod_cidr], check=False)
        if self.exists():
            run(["ip", "netns", "delete", self.netns])
        run(["ip", "link", "del", self.host_veth], check=False)
