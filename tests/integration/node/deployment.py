"""Helpers of the deployment tests on the real node: pods run to their end, and our chart's
operator installed as devstack.deploy installs it (Zero to JupyterHub's chart: z2jh.py). The
fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from devstack.deploy import OPERATOR_SERVICE, SYSTEM, install_operator, uninstall_operator
from devstack.images import load
from devstack.node import Node
from devstack.paths import BIN
from devstack.standins import Z2JHMissing, vendor_z2jh

from ..stack import run, wait_for

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


@contextlib.contextmanager
def operator_installed(node: Node) -> Iterator[Node]:
    """Our chart's operator (devstack.deploy); its Service is a NodePort (REPORT_NODE_PORT) so
    that jobs can report to it without a hub, and the hub (z2jh.py) may run pod profiles."""
    try:
        install_operator(node, "service.type=NodePort", "hub.rbac.kubeSpawner=true")
        node.kubectl(
            "-n", SYSTEM, "patch", "service", OPERATOR_SERVICE, "--type=json", "-p",
            json.dumps([{"op": "replace", "path": "/spec/ports/0/nodePort",
                         "value": REPORT_NODE_PORT}]),
        )  # fmt: skip
        yield node
    finally:
        uninstall_operator(node)


def operator_exec(node: Node, *argv: str) -> subprocess.CompletedProcess:
    return run(BIN / "kubectl", "--kubeconfig", node.state / "kubeconfig", "-n", SYSTEM,
               "exec", f"deploy/{OPERATOR_SERVICE}", "--", *argv, check=False)  # fmt: skip
