"""A real Kubernetes control plane (etcd + kube-apiserver) for one stack, in its state directory:
the API server on PORT, etcd on PORT + 1 (clients) and PORT + 2 (peers). dev/controlplane.sh
builds the binaries into the cache; this starts, checks and stops them. With `node_address` the
API server is advertised where a node's pods reach it (cluster.py); without, it serves loopback
only, for the process stacks of the tests and the benchmark."""

from __future__ import annotations

import secrets
import ssl
import urllib.request
from pathlib import Path

from .paths import BIN, REPO
from .processes import Daemon, http_answers, listens, log, run

READY_SECONDS = 90
# The argument that names the stack of each process (processes.Daemon).
ETCD_MARKER = "--data-dir={dir}/etcd-data"
APISERVER_MARKER = "--cert-dir={dir}/certs"


class ControlPlane:
    def __init__(self, state: Path, port: int, node_address: str | None = None) -> None:
        if not 1024 <= port <= 65533:
            raise RuntimeError(f"bad port: {port}")
        self.state = state.resolve()
        self.port, self.node_address = port, node_address
        self.dir = self.state / "controlplane"
        self.kubeconfig = self.state / "kubeconfig"
        etcd_port, peer_port = port + 1, port + 2
        self.etcd = Daemon(
            "etcd",
            [str(BIN / "etcd"), "--name=batchnotebook", f"--data-dir={self.dir}/etcd-data",
             f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
             f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
             f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
             f"--initial-cluster=batchnotebook=http://127.0.0.1:{peer_port}",
             "--unsafe-no-fsync"],
            self.state / "run", self.state / "logs", marker=ETCD_MARKER.format(dir=self.dir),
        )  # fmt: skip
        self.apiserver = Daemon(
            "kube-apiserver",
            [str(BIN / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
             *self._node_flags(), f"--secure-port={port}", f"--cert-dir={self.dir}/certs",
             f"--token-auth-file={self.dir}/tokens.csv", "--authorization-mode=RBAC",
             # TokenRequest (kubectl create token) works; tokens carry both audiences, the
             # in-cluster one first as on a real cluster.
             f"--service-account-issuer=https://127.0.0.1:{port}",
             f"--service-account-key-file={self.dir}/sa.key",
             f"--service-account-signing-key-file={self.dir}/sa.key",
             "--api-audiences=https://kubernetes.default.svc.cluster.local,"
             f"https://127.0.0.1:{port}",
             "--allow-privileged=true"],
            self.state / "run", self.state / "logs", marker=APISERVER_MARKER.format(dir=self.dir),
        )  # fmt: skip

    def _node_flags(self) -> list[str]:
        if self.node_address is None:
            # No node: without a default route the API server cannot pick an address to
            # advertise; it refuses a loopback one in the `kubernetes` Service's endpoints (so no
            # reconciler); no ServiceAccount admission, as no controller-manager makes them.
            return [
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none", "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
            ]  # fmt: skip
        # A node beside it (node.py): pods reach it at this machine's end of the node's veth, the
        # controller-manager makes ServiceAccounts, the kubelet gets a client certificate.
        pki = self.state / "node" / "pki"
        return [
            "--bind-address=0.0.0.0", f"--advertise-address={self.node_address}",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
        ]  # fmt: skip

    def start(self) -> Path:
        """Starts what does not run; returns the kubeconfig once the API server is ready."""
        run([REPO / "dev" / "controlplane.sh", "build"])
        (self.dir / "etcd-data").mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        (self.dir / "etcd-data").chmod(0o700)  # etcd wants its data directory private
        self._credentials()
        for daemon, flag in (
            (self.etcd, "--listen-client-urls"),
            (self.apiserver, "--secure-port"),
        ):
            if daemon.pid() is not None and not daemon.runs_with(flag):
                raise RuntimeError(f"{daemon.name} of {self.state} runs on other ports; stop it")
        if self.etcd.pid() is None:
            self._port_free(self.port + 1, self.port + 2)
            self.etcd.start()
        self.etcd.wait_ready(lambda: http_answers(f"http://127.0.0.1:{self.port + 1}/health"), 30)
        self._forget_certificate_of_another_address()
        if self.apiserver.pid() is None:
            self._port_free(self.port)
            self.apiserver.start()
            log("controlplane", f"kube-apiserver started (port {self.port})")
        self.apiserver.wait_ready(self.ready, READY_SECONDS)
        self._write_kubeconfig()
        return self.kubeconfig

    def stop(self) -> None:
        stop(self.state)

    @property
    def token(self) -> str:
        return (self.dir / "tokens.csv").read_text().split(",", 1)[0]

    def ready(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/readyz",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            urllib.request.urlopen(request, timeout=5, context=context).close()
        except OSError:
            return False
        return True

    def _credentials(self) -> None:
        """The admin token and the ServiceAccount key, made once and kept, so that tokens and
        kubeconfigs stay valid across restarts."""
        tokens = self.dir / "tokens.csv"
        if not tokens.exists() or not tokens.stat().st_size:
            private(tokens, f'{secrets.token_hex(32)},admin,admin,"system:masters"\n')
        key = self.dir / "sa.key"
        if not key.exists() or not key.stat().st_size:
            private(key, run(["openssl", "genrsa", "2048"]).stdout)

    def _forget_certificate_of_another_address(self) -> None:
        """The API server makes its serving certificate once, for the address it advertises: a
        state directory that ran without a node (or with another address) gets a new one."""
        certificate = self.dir / "certs" / "apiserver.crt"
        address = self.node_address or "127.0.0.1"
        if not certificate.exists():
            return
        checked = run(["openssl", "x509", "-in", certificate, "-noout", "-checkip", address])
        if " does match" not in checked.stdout:
            self.apiserver.stop()
            certificate.unlink()
            (self.dir / "certs" / "apiserver.key").unlink(missing_ok=True)

    def _write_kubeconfig(self) -> None:
        # The self-signed serving certificate names the advertised address.
        name = "batchnotebook-" + "".join(c for c in self.state.name if c.isalnum() or c == "-")
        server = f"https://{self.node_address or '127.0.0.1'}:{self.port}"
        private(
            self.kubeconfig,
            f"""apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {server}
    certificate-authority: {self.dir}/certs/apiserver.crt
users:
- name: admin
  user:
    token: {self.token}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: admin
    namespace: default
current-context: {name}
""",
        )

    @staticmethod
    def _port_free(*ports: int) -> None:
        for port in ports:
            if listens("127.0.0.1", port):
                raise RuntimeError(f"port {port} is already in use by another process")


def stop(state: Path) -> None:
    """Stops a stack's API server, then its etcd (so that the API server never runs against a
    missing etcd), known by their pid files and the stack's directory alone."""
    state = state.resolve()
    directory = state / "controlplane"
    for name, marker in (("kube-apiserver", APISERVER_MARKER), ("etcd", ETCD_MARKER)):
        Daemon(name, [], state / "run", state / "logs", marker.format(dir=directory)).stop()


def private(path: Path, text: str) -> None:
    """Writes `path` 0600 through a temporary file, so that nobody reads half of it."""
    partial = path.with_name(path.name + ".tmp")
    partial.touch(mode=0o600)
    partial.chmod(0o600)
    partial.write_text(text)
    partial.replace(path)
