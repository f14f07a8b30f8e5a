"""The campaign's own process stack: an API server and etcd in its state directory
(devstack.controlplane), two operator replicas behind one Lease (devstack.host; the chart's
`replicas: 2` with leader election), a login node's sshd (dev/sshd.sh) on its own port, the
system Slurm of dev/slurm.sh with its slurmrestd, and Toxiproxy between the operator and the
API server, the sshd and slurmrestd (chaos.network). Three BatchClusters reach that Slurm: one
runs its commands locally, one over SSH through the login node, one through slurmrestd, so that
each fault of the network or of a daemon breaks some sites and not others."""

from __future__ import annotations

import base64
import os
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import urllib3
from kubernetes import client, config

from batchnotebook_api import GROUP, VERSION
from batchnotebook_operator.lease import URL_ANNOTATION
from devstack import controlplane
from devstack.controlplane import ControlPlane
from devstack.host import OperatorProcess
from devstack.processes import listens
from tests.integration.stack import REPO, kubectl, run

from . import sites
from .network import Network, Proxy
from .sites import JWT_KEY, SLURMRESTD_PORT

OPERATOR_NAMESPACE = "default"  # where the operator reads its SSH key Secret
TIMEOUT = 5  # seconds for any one API request: a dead API server must not hang the campaign
# What a request to an API server that is down or restarting raises.
API_ERRORS = (client.ApiException, urllib3.exceptions.HTTPError, OSError)
# The Lease's timing (seconds): a standby takes over at most this long after the leader died.
LEASE = {"DURATION": 15, "RENEW_DEADLINE": 10, "RETRY_PERIOD": 2}
SECOND_REPLICA = 10  # the second replica listens on the operator's port + this


def meta(name: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name)


class Stack:
    def __init__(
        self,
        state: Path,
        api_port: int,
        operator_port: int,
        sshd_port: int,
        poll_interval: int,
        seed: int = 0,
    ) -> None:
        self.state = state.resolve()
        self.logs = self.state / "logs"
        self.sshd_port, self.poll_interval = sshd_port, poll_interval
        self.plane = ControlPlane(self.state / "stack", api_port)
        suffix = uuid.uuid4().hex[:6]
        self.lease = f"chaos-{suffix}"
        # Toxiproxy's API, then one proxy each for the sshd, slurmrestd and the API server.
        self.network = Network(
            self.state,
            sshd_port + 1,
            [
                Proxy("ssh", sshd_port + 2, sshd_port),
                Proxy("rest", sshd_port + 3, SLURMRESTD_PORT),
                Proxy("apiserver", sshd_port + 4, api_port),
            ],
            comment=f"bnb-chaos-{suffix}",
            seed=seed,
        )
        # The operators reach the API server through its proxy.
        self.operator_kubeconfig = self.state / "operator.kubeconfig"
        self.operators = [
            self._replica(name, port)
            for name, port in (
                ("replica-a", operator_port),
                ("replica-b", operator_port + SECOND_REPLICA),
            )
        ]
        # Replicas a fault keeps down; the others are started again when they exit, as the
        # Deployment's kubelet would (a leader that cannot renew its Lease exits on purpose).
        self.held_down: set[str] = set()
        self.exits: list[str] = []
        self.starting = threading.Lock()
        self.namespace = f"chaos-{suffix}"
        self.clusters = {
            kind: f"chaos-{kind}-{suffix}" for kind in ("local", "ssh", "rest", sites.EMULATOR)
        }
        self.core: client.CoreV1Api
        self.custom: client.CustomObjectsApi

    def _replica(self, name: str, port: int) -> OperatorProcess:
        url = f"http://127.0.0.1:{port}"
        return OperatorProcess(
            self.operator_kubeconfig,
            port,
            self.logs,
            name=name,
            args=["--verbose", "--liveness", f"http://127.0.0.1:{port + 2}/healthz"],
            env={
                "BATCHNOTEBOOK_NAMESPACE": OPERATOR_NAMESPACE,
                "BATCHNOTEBOOK_LEASE": self.lease,
                "BATCHNOTEBOOK_PEER_URL": url,
                **{f"BATCHNOTEBOOK_LEASE_{key}": str(value) for key, value in LEASE.items()},
            },
        )

    def supervise(self) -> None:
        """Starts again every replica that exited on its own (counted in `exits`)."""
        for operator in self.operators:
            with self.starting:
                if operator.alive or operator.name in self.held_down:
                    continue
                self.exits.append(f"{operator.name} {datetime.now(UTC):%H:%M:%S}")
                try:
                    operator.start()
                except RuntimeError as error:  # exited again at once: the next round retries
                    print(f"chaos: {operator.name} did not start: {error}", flush=True)

    def leader(self) -> OperatorProcess | None:
        """The replica holding the Lease, as the Lease says (None: none, or no answer)."""
        try:
            lease = client.CoordinationV1Api(self.core.api_client).read_namespaced_lease(
                self.lease, OPERATOR_NAMESPACE, _request_timeout=TIMEOUT
            )
        except API_ERRORS:
            return None
        if lease.metadata is None or not (lease.spec and lease.spec.holder_identity):
            return None  # released: nobody leads
        url = (lease.metadata.annotations or {}).get(URL_ANNOTATION, "")
        return next((o for o in self.operators if f"127.0.0.1:{o.port}" in url), None)

    def slurm(self, *args: str) -> None:
        env = {**os.environ, "BATCHNOTEBOOK_STATE": str(self.state)}
        run(REPO / "dev/slurm.sh", *args, env=env)

    def sshd(self, *args: str) -> str:
        env = {
            **os.environ,
            "BATCHNOTEBOOK_STATE": str(self.state),
            "BATCHNOTEBOOK_SSHD_PORT": str(self.sshd_port),
        }
        return run(REPO / "dev/sshd.sh", *args, env=env).stdout

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # A fresh etcd: objects an interrupted campaign left would be followed by this operator.
        controlplane.stop(self.plane.state)
        shutil.rmtree(self.plane.state, ignore_errors=True)
        kubeconfig = self.plane.start()
        self.network.start()
        text = kubeconfig.read_text().replace(
            f"127.0.0.1:{self.plane.port}", f"127.0.0.1:{self.network.port('apiserver')}"
        )
        self.operator_kubeconfig.touch(mode=0o600)
        self.operator_kubeconfig.write_text(text)
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", REPO / "crds")
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.slurm("install")
        self.slurm("start")
        self.sshd("install")
        self.sshd("start")
        for operator in self.operators:
            operator.start()
        self.core.create_namespace(client.V1Namespace(metadata=meta(self.namespace)))
        key = base64.b64encode((self.state / "sshd" / "id_ed25519").read_bytes()).decode()
        secret = f"{self.namespace}-ssh-key"
        self.core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(metadata=meta(secret), data={"ssh-privatekey": key}),
        )
        self.core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(
                metadata=meta(f"{self.namespace}-jwt"),
                data={"jwt_hs256.key": base64.b64encode(JWT_KEY.read_bytes()).decode()},
            ),
        )
        rest = {
            "type": "slurmrest",
            "slurmrest": {
                "url": f"http://127.0.0.1:{self.network.port('rest')}",
                "jwtKeySecret": {"name": f"{self.namespace}-jwt"},
                "homeDirectory": "/home/{user}",
            },
        }
        ssh = {
            "type": "ssh",
            "ssh": {
                "host": "127.0.0.1",
                "port": self.network.port("ssh"),
                "hostKey": self.sshd("host-key").strip(),
                "privateKeySecret": {"name": secret},
                "keepaliveSeconds": 2,
            },
        }
        sites.install_emulator()
        for kind, connection in (
            ("local", {"type": "local"}),
            ("ssh", ssh),
            ("rest", rest),
            (sites.EMULATOR, sites.emulator_connection()),
        ):
            scheduler, partition = (
                (sites.EMULATOR, "batch") if kind == sites.EMULATOR else ("slurm", sites.PARTITION)
            )
            self.custom.create_cluster_custom_object(
                GROUP,
                VERSION,
                "batchclusters",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "BatchCluster",
                    "metadata": {"name": self.clusters[kind]},
                    "spec": sites.cluster_spec(
                        scheduler, partition, self.operators[0].port, self.poll_interval, connection
                    ),
                },
            )

    def healthy(self, since: float) -> bool:
        """Every component answers (both replicas, the network as it was, every Slurm daemon),
        and the leader has reached every site in a round that ended after `since` (a condition
        written before the fault would say nothing)."""
        if not (
            self.plane.ready()
            and all(o.alive and o.answers() for o in self.operators)
            and self.network.healthy()
            and listens("127.0.0.1", self.sshd_port)
            and sites.emulator_up()
        ):
            return False
        if run(REPO / "dev/slurm.sh", "status", check=False).returncode != 0:
            return False
        return "is UP" in run("scontrol", "ping", check=False).stdout and self.sites_reachable(
            since
        )

    def sites_reachable(self, since: float) -> bool:
        for name in self.clusters.values():
            try:
                cluster = self.custom.get_cluster_custom_object(
                    GROUP, VERSION, "batchclusters", name, _request_timeout=TIMEOUT
                )
            except API_ERRORS:
                return False
            status = cast(dict, cluster).get("status", {})
            polled = status.get("lastPollTime")
            if not polled or datetime.fromisoformat(polled).timestamp() < since:
                return False
            conditions = status.get("conditions", [])
            if not any(
                c["type"] == "SchedulerReachable" and c["status"] == "True" for c in conditions
            ):
                return False
        return True

    def stop(self) -> None:
        """Stops what the campaign started; the system Slurm keeps running (and any of its
        daemons a fault stopped is started again)."""
        for operator in self.operators:
            operator.stop()
        self.network.stop()
        self.sshd("stop")
        self.plane.stop()
        self.slurm("start")
        sites.emulator_down(False)

    def cancel_outside(self, cluster: str, job_id: str) -> bool:
        """As an admin or the user would, past the hub: scancel or the emulator's qdel."""
        if cluster == self.clusters[sites.EMULATOR]:
            return sites.emulator_cancel(job_id)
        return run("scancel", job_id, check=False).returncode == 0
