"""The campaign's own process stack: an API server and etcd in its state directory
(devstack.controlplane), the operator as a process (devstack.host), a login node's sshd
(dev/sshd.sh) on its own port, and the system Slurm of dev/slurm.sh. Two BatchClusters reach
that Slurm: one runs its commands locally, one over SSH through the login node, so that a
stopped sshd breaks one site and not the other."""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import cast

import urllib3
from kubernetes import client, config

from batchnotebook_api import GROUP, VERSION
from devstack import controlplane
from devstack.controlplane import ControlPlane
from devstack.host import OperatorProcess
from devstack.processes import listens
from tests.integration.stack import JOB_PYTHON, REPO, STAND_IN, kubectl, run

OPERATOR_NAMESPACE = "default"  # where the operator reads its SSH key Secret
PARTITION = "bench"  # oversubscribed (dev/slurm.sh): dozens of stand-in servers fit
TIMEOUT = 5  # seconds for any one API request: a dead API server must not hang the campaign
# What a request to an API server that is down or restarting raises.
API_ERRORS = (client.ApiException, urllib3.exceptions.HTTPError, OSError)


def meta(name: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name)


def cluster_spec(operator_port: int, poll_interval: int, connection: dict) -> dict:
    return {
        "scheduler": "slurm",
        "callbackURL": f"http://127.0.0.1:{operator_port}",
        "allowInsecureCallback": True,  # the report never leaves this machine
        "execHosts": {"allowLoopback": True},  # the jobs run on this machine
        "pollIntervalSeconds": poll_interval,
        "python": JOB_PYTHON,
        "jupyterCommand": [JOB_PYTHON, "-c", STAND_IN],
        "connection": connection,
        "profiles": [
            {
                "name": "chaos",
                "displayName": "Chaos",
                "description": "1 CPU shared",
                "defaults": {"cpus": 1, "memory": "8M", "walltime": "01:00:00"}
                | {"partition": PARTITION},
                "limits": {"maxCpus": 1, "maxMemory": "64M", "maxWalltime": "02:00:00"}
                | {"partitions": [PARTITION], "accounts": ["research"]},
            }
        ],
    }


class Stack:
    def __init__(
        self, state: Path, api_port: int, operator_port: int, sshd_port: int, poll_interval: int
    ) -> None:
        self.state = state.resolve()
        self.logs = self.state / "logs"
        self.sshd_port, self.poll_interval = sshd_port, poll_interval
        self.plane = ControlPlane(self.state / "stack", api_port)
        self.operator = OperatorProcess(
            self.plane.kubeconfig,
            operator_port,
            self.logs,
            env={"BATCHNOTEBOOK_NAMESPACE": OPERATOR_NAMESPACE},
        )
        suffix = uuid.uuid4().hex[:6]
        self.namespace = f"chaos-{suffix}"
        self.clusters = {"local": f"chaos-local-{suffix}", "ssh": f"chaos-ssh-{suffix}"}
        self.core: client.CoreV1Api
        self.custom: client.CustomObjectsApi

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
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", REPO / "crds")
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.slurm("install")
        self.slurm("start")
        self.sshd("install")
        self.sshd("start")
        self.operator.start()
        self.core.create_namespace(client.V1Namespace(metadata=meta(self.namespace)))
        key = base64.b64encode((self.state / "sshd" / "id_ed25519").read_bytes()).decode()
        secret = f"{self.namespace}-ssh-key"
        self.core.create_namespaced_secret(
            OPERATOR_NAMESPACE,
            client.V1Secret(metadata=meta(secret), data={"ssh-privatekey": key}),
        )
        ssh = {
            "type": "ssh",
            "ssh": {
                "host": "127.0.0.1",
                "port": self.sshd_port,
                "hostKey": self.sshd("host-key").strip(),
                "privateKeySecret": {"name": secret},
                "keepaliveSeconds": 2,
            },
        }
        for kind, connection in (("local", {"type": "local"}), ("ssh", ssh)):
            self.custom.create_cluster_custom_object(
                GROUP,
                VERSION,
                "batchclusters",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "BatchCluster",
                    "metadata": {"name": self.clusters[kind]},
                    "spec": cluster_spec(self.operator.port, self.poll_interval, connection),
                },
            )

    def healthy(self, since: float) -> bool:
        """Every component answers, and the operator has reached both sites in a round that
        ended after `since` (a condition written before the fault would say nothing)."""
        if not (self.plane.ready() and self.operator.alive and self.operator.answers()):
            return False
        ping = run("scontrol", "ping", check=False).stdout
        return (
            "is UP" in ping and listens("127.0.0.1", self.sshd_port) and self.sites_reachable(since)
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
        """Stops what the campaign started; the system Slurm keeps running."""
        self.operator.stop()
        self.sshd("stop")
        self.plane.stop()
