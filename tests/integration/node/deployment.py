"""The product installed the way sites install it, on the real node (dev/devstack): our chart's
operator from the image of our Dockerfile, and (test_z2jh.py) Zero to JupyterHub's chart. Shared
by the deployment tests; the fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from devstack.images import load
from devstack.node import Node
from devstack.paths import BIN
from devstack.product import OPERATOR_IMAGE, build_operator_image
from devstack.standins import Z2JHMissing, vendor_z2jh

from ..stack import REPO, run, wait_for

RELEASE, SYSTEM = "batchnotebook", "batchnotebook-system"
OPERATOR_SERVICE = f"{RELEASE}-operator"
HUB_NAMESPACE = "jupyterhub"
NOTEBOOKS = f"{HUB_NAMESPACE}-notebooks"  # the chart's notebook namespace for that hub
REPORT_NODE_PORT = 30880


def need_z2jh() -> None:
    """Zero to JupyterHub's chart and hub image source come from outside our tree (the public
    chart where the internet is reachable): without them, say so and skip."""
    try:
        vendor_z2jh()
    except Z2JHMissing as missing:
        pytest.skip(str(missing))


def run_pod(
    node: Node,
    namespace: str,
    name: str,
    image: str,
    script: str,
    security: dict | None = None,
    timeout: float = 180,
) -> str:
    """Runs `script` with the image's python to its end in a pod; returns what it printed."""
    load(node.socket, image)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                    "securityContext": security or {},
                }
            ],
        },
    }
    node.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def phase() -> str:
        return node.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")

    wait_for(lambda: phase() in ("Succeeded", "Failed"), timeout, f"pod {name} to finish")
    said = node.kubectl("-n", namespace, "logs", name)
    assert phase() == "Succeeded", said
    return said


def sshd(node: Node, *args: str) -> str:
    """The login node of the node's stack: an sshd where pods reach this machine."""
    env = {
        **os.environ,
        "BATCHNOTEBOOK_STATE": str(node.state),
        "BATCHNOTEBOOK_SSHD_PORT": str(sshd_port(node)),
        "BATCHNOTEBOOK_SSHD_ADDRESS": node.network.host_address,
    }
    return run(REPO / "dev/sshd.sh", *args, env=env).stdout


def sshd_port(node: Node) -> int:
    return node.api_port + 22


def helm(node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(BIN / "helm", "--kubeconfig", node.state / "kubeconfig", *args, check=check)


def ssh_connection(node: Node) -> dict:
    return {
        "type": "ssh",
        "ssh": {
            "host": node.network.host_address,
            "port": sshd_port(node),
            "user": "batchnotebook",
            "hostKey": sshd(node, "host-key").strip(),
            "privateKeySecret": {"name": "hpc-ssh"},
        },
    }


@contextlib.contextmanager
def operator_installed(node: Node) -> Iterator[Node]:
    """`helm install` of our chart with the operator image built here; its Service is a NodePort
    (REPORT_NODE_PORT) so that jobs can report to it without a hub."""
    run(REPO / "dev/helm.sh", "build")
    load(node.socket, build_operator_image())
    sshd(node, "install")
    sshd(node, "start")
    try:
        key = (node.state / "sshd" / "id_ed25519").read_bytes()
        node.kubectl("create", "namespace", SYSTEM)
        node.kubectl(
            "-n", SYSTEM, "create", "secret", "generic", "hpc-ssh",
            f"--from-literal=ssh-privatekey={key.decode()}",
        )  # fmt: skip
        repository, tag = OPERATOR_IMAGE.rsplit(":", 1)
        helm(
            node,
            *("install", RELEASE, str(REPO / "charts/batchnotebook"), "-n", SYSTEM, "--wait"),
            *("--timeout", "5m", "--set", f"image.repository={repository}"),
            *("--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never"),
            *("--set", f"hub.namespace={HUB_NAMESPACE}", "--set", "secrets.sshKeys={hpc-ssh}"),
            *("--set", "service.type=NodePort"),
            # The hub (z2jh.py) has a pod profile too.
            *("--set", "hub.rbac.kubeSpawner=true"),
        )
        node.kubectl(
            "-n", SYSTEM, "patch", "service", OPERATOR_SERVICE, "--type=json", "-p",
            json.dumps([{"op": "replace", "path": "/spec/ports/0/nodePort",
                         "value": REPORT_NODE_PORT}]),
        )  # fmt: skip
        yield node
    finally:
        helm(node, "uninstall", RELEASE, "-n", SYSTEM, "--wait", check=False)
        sshd(node, "stop")


def operator_exec(node: Node, *argv: str) -> subprocess.CompletedProcess:
    return run(BIN / "kubectl", "--kubeconfig", node.state / "kubeconfig", "-n", SYSTEM,
               "exec", f"deploy/{OPERATOR_SERVICE}", "--", *argv, check=False)  # fmt: skip
