"""A real single-node Kubernetes beside the control plane of controlplane.py:
containerd with runc and the CNI plugins, the kubelet, kube-proxy, kube-controller-manager and
kube-scheduler, all in the node's network namespace (network.py), then CoreDNS as a Deployment.

The kubelet uses the cgroupfs driver under a cgroup root of its own and accepts this machine's
hybrid cgroups (`failCgroupV1: false`): the machine's mounts are left as they are."""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass
from pathlib import Path

from .images import COREDNS_IMAGE, PAUSE_IMAGE, load_node_images
from .network import CLUSTER_DNS, CLUSTER_DOMAIN, SERVICE_CIDR, NodeNetwork
from .paths import BIN, CNI_BIN, REPO
from .pki import ensure_ca, ensure_certificate
from .processes import Daemon, log, run, wait_until

NODE_NAME = "batchnotebook-node"
CGROUPS = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Node:
    state: Path  # the control plane's state directory (controlplane.py)
    api_port: int
    network: NodeNetwork

    # ---- where things live --------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.state / "node"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig as seen from inside the node's namespace."""
        return self.dir / "kubeconfig"

    def _daemon(self, name: str, argv: list[str], marker: str) -> Daemon:
        env = {"PATH": f"{BIN}:{CNI_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"}
        return Daemon(
            name,
            argv,
            self.state / "run",
            self.state / "logs",
            marker,
            env=env,
            prefix=self.network.enter(),
        )

    # ---- configuration ------------------------------------------------------------------------

    def _write(self, name: str, text: str, mode: int = 0o644) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, mode)
        return path

    def _template(self, name: str, **values: object) -> str:
        text = (REPO / "dev" / "node" / name).read_text()
        return string.Template(text).substitute(**{k: str(v) for k, v in values.items()})

    def configure(self) -> None:
        net = self.network
        token = (self.state / "controlplane" / "tokens.csv").read_text().split(",", 1)[0]
        api_ca = self.state / "controlplane" / "certs" / "apiserver.crt"
        self._write(
            "kubeconfig",
            self._template(
                "kubeconfig",
                server=f"https://{net.host_address}:{self.api_port}",
                ca=api_ca,
                token=token,
            ),
            0o600,
        )
        pki = self.dir / "pki"
        ensure_ca(pki)
        ensure_certificate(pki, "kubelet", f"/CN={NODE_NAME}", (net.node_address,))
        ensure_certificate(
            pki,
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            client=True,
        )
        containerd = self.dir / "containerd"
        self._write(
            "containerd/config.toml",
            self._template(
                "containerd.toml",
                root=containerd / "root",
                state=containerd / "state",
                socket=self.socket,
                pause=PAUSE_IMAGE,
                cni_bin=CNI_BIN,
                cni_conf=self.dir / "cni",
                runc_root=containerd / "runc",
            ),
        )
        self._write(
            "cni/10-batchnotebook.conflist",
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "batchnotebook",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": net.bridge,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": net.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.dir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            ),
        )
        # Pods that use the node's DNS settings (dnsPolicy: Default) get CoreDNS too: this
        # machine's resolver is not reachable from the node's namespace.
        self._write("resolv.conf", f"nameserver {CLUSTER_DNS}\n")
        self._write(
            "kubelet.yaml",
            self._template(
                "kubelet.yaml",
                address=net.node_address,
                ca=pki / "ca.crt",
                cert=pki / "kubelet.crt",
                key=pki / "kubelet.key",
                cgroup_root=f"/{self.cgroup_root}",
                socket=self.socket,
                dns=CLUSTER_DNS,
                domain=CLUSTER_DOMAIN,
                resolv=self.dir / "resolv.conf",
                pod_logs=self.dir / "pod-logs",
            ),
        )
        self._write(
            "kube-proxy.yaml",
            self._template(
                "kube-proxy.yaml",
                kubeconfig=self.kubeconfig,
                cluster_cidr=net.pod_cidr,
                node=NODE_NAME,
                address=net.node_address,
            ),
        )

    # ---- the processes ------------------------------------------------------------------------

    def daemons(self) -> list[Daemon]:
        """In start order; stopped in the reverse."""
        node_dir = str(self.dir)
        cp = self.state / "controlplane"
        return [
            self._daemon(
                "containerd",
                [str(BIN / "containerd"), "--config", f"{node_dir}/containerd/config.toml"],
                node_dir,
            ),
            self._daemon(
                "kube-controller-manager",
                [
                    str(BIN / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--service-account-private-key-file={cp / 'sa.key'}",
                    f"--root-ca-file={cp / 'certs' / 'apiserver.crt'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--use-service-account-credentials=false",
                ],
                node_dir,
            ),
            self._daemon(
                "kube-scheduler",
                [
                    str(BIN / "kube-scheduler"),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                ],
                node_dir,
            ),
            self._daemon(
                "kubelet",
                [
                    str(BIN / "kubelet"),
                    f"--config={node_dir}/kubelet.yaml",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--root-dir={node_dir}/kubelet",
                    f"--cert-dir={node_dir}/kubelet-certs",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={self.network.node_address}",
                ],
                node_dir,
            ),
            self._daemon(
                "kube-proxy",
                [str(BIN / "kube-proxy"), f"--config={node_dir}/kube-proxy.yaml"],
                node_dir,
            ),
        ]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        argv = [BIN / "kubectl", "--kubeconfig", self.state / "kubeconfig", *args]
        return run(argv, input=input, check=check).stdout

    @property
    def cgroup_root(self) -> str:
        return f"batchnotebook-{self.network.index}"

    def cgroups(self) -> list[Path]:
        """The node's cgroup in every hierarchy this machine mounts under /sys/fs/cgroup."""
        mounted = [p for p in CGROUPS.iterdir() if p.is_dir() and (p / "cgroup.procs").exists()]
        return [hierarchy / self.cgroup_root for hierarchy in sorted(mounted)]

    def make_cgroups(self) -> None:
        """The kubelet wants its cgroup root to exist in each hierarchy; a new cpuset gets its
        parent's CPUs and memory nodes, or nothing could run in it."""
        for cgroup in self.cgroups():
            cgroup.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (cgroup / name).exists() and not (cgroup / name).read_text().strip():
                    (cgroup / name).write_text((cgroup.parent / name).read_text())

    def remove_cgroups(self) -> None:
        """Removes the node's (empty) cgroups, deepest first."""
        for cgroup in self.cgroups():
            if cgroup.is_dir():
                for child in sorted(cgroup.rglob("*/"), key=lambda p: -len(p.parts)):
                    if child.is_dir():
                        child.rmdir()
                cgroup.rmdir()

    def start(self) -> None:
        self.network.create()
        self.configure()
        self.make_cgroups()
        containerd, *others = self.daemons()
        containerd.start()
        containerd.wait_ready(lambda: self.socket.exists(), 30)
        load_node_images(self.socket)
        for daemon in others:
            daemon.start()
        wait_until(self.ready, 120, f"node {NODE_NAME} to be Ready")
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=self._template(
                "coredns.yaml",
                image=COREDNS_IMAGE,
                dns=CLUSTER_DNS,
                domain=CLUSTER_DOMAIN,
                host=self.network.host_address,
            ),
        )
        self.kubectl(
            "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s"
        )
        log("node", f"{NODE_NAME} ready at {self.network.node_address}")

    def running(self) -> bool:
        """Whether any of the node's processes runs (known by pid file and marker)."""
        return any(daemon.pid() is not None for daemon in self.daemons())

    def ready(self) -> bool:
        for daemon in self.daemons():
            if daemon.pid() is None:
                raise RuntimeError(f"{daemon.name} exited; its log ends:\n{daemon.tail()}")
        ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        return self.kubectl("get", "node", NODE_NAME, "-o", ready, check=False).strip() == "True"

    def stop(self) -> None:
        """Stops the node's processes and the containers they ran, then removes its network."""
        for daemon in reversed(self.daemons()):
            if daemon.name == "containerd":
                self.remove_containers()
            daemon.stop()
        self.unmount()
        self.remove_cgroups()
        self.network.delete()

    def unmount(self) -> None:
        """Unmounts what the kubelet and containerd left under the node's directory (the kubelet
        bind-mounts its root onto itself; volumes and snapshots are mounts too), deepest first."""
        inside = f"{self.dir}/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        for point in sorted({p for p in points if p.startswith(inside)}, key=len, reverse=True):
            run(["umount", point], check=False)

    def remove_containers(self) -> None:
        """Kills every task containerd runs for the node, so no container outlives the stack."""
        if not self.socket.exists():
            return
        ctr = [BIN / "ctr", "--address", self.socket, "--namespace", "k8s.io"]
        listed = run([*ctr, "tasks", "list", "--quiet"], check=False).stdout.split()
        # Pod sandboxes' network namespaces (/run/netns/cni-*) outlive their tasks.
        namespaces = set()
        for container in run([*ctr, "containers", "list", "--quiet"], check=False).stdout.split():
            info = run([*ctr, "containers", "info", container], check=False).stdout
            spec = json.loads(info or "{}").get("Spec") or {}
            for namespace in spec.get("linux", {}).get("namespaces", []):
                if namespace.get("type") == "network" and namespace.get("path"):
                    namespaces.add(Path(namespace["path"]).name)
        for task in listed:
            run([*ctr, "tasks", "kill", "--signal", "SIGKILL", task], check=False)
        for task in listed:
            run([*ctr, "tasks", "delete", "--force", task], check=False)
        for namespace in sorted(namespaces):
            run(["ip", "netns", "delete", namespace], check=False)
