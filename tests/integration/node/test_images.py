"""Our Dockerfile's two images, built here with buildah on the local stand-ins and run as pods on
the real node: the operator as uid 10001 on a read-only root filesystem, the hub with the
spawner and without the operator's dependencies. An unchanged tree rebuilds nothing."""

from __future__ import annotations

import json

import pytest
from devstack.images import image_id, load
from devstack.product import build_hub_image, build_operator_image

from ..stack import wait_for
from .deployment import need_z2jh

pytestmark = [pytest.mark.node]
NAMESPACE = "images-test"


@pytest.fixture(scope="module")
def node(cluster_node):
    cluster_node.kubectl("create", "namespace", NAMESPACE)
    yield cluster_node
    cluster_node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def run_pod(node, name: str, image: str, script: str, security: dict | None = None) -> str:
    """Runs `script` with the image's python to its end in a pod; returns what it printed."""
    load(node.socket, image)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
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
        return node.kubectl("-n", NAMESPACE, "get", "pod", name, "-o", "jsonpath={.status.phase}")

    wait_for(lambda: phase() in ("Succeeded", "Failed"), 180, f"pod {name} to finish")
    said = node.kubectl("-n", NAMESPACE, "logs", name)
    assert phase() == "Succeeded", said
    return said


def test_the_operator_image_runs_unprivileged_on_a_read_only_root(node):
    image = build_operator_image()
    said = run_pod(
        node,
        "operator",
        image,
        "import os, kopf, batchnotebook_operator\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n"
        "    open('/opt/batchnotebook/written', 'w')\n"
        "except OSError as error:\n"
        "    print(error.strerror)\n",
        {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    )
    assert said.split("\n")[:2] == ["10001 10001", "Read-only file system"], said


def test_the_hub_image_has_the_spawner_and_not_the_operators_dependencies(node):
    need_z2jh()
    image = build_hub_image()
    said = run_pod(
        node,
        "hub",
        image,
        "import importlib.util, os, jupyterhub, kubespawner, batchnotebook_spawner\n"
        "print(os.getuid(), jupyterhub.__version__)\n"
        "print([m for m in ('kopf', 'asyncssh') if importlib.util.find_spec(m)])\n",
    )
    identity, missing = said.strip().split("\n")
    uid, version = identity.split()
    assert uid == "1000"  # Zero to JupyterHub's jovyan
    assert version.startswith("5.")
    assert missing == "[]"


def test_an_unchanged_tree_rebuilds_nothing(node):
    need_z2jh()
    # A step that ran again would make a new layer, and so a new image id.
    before = image_id(build_operator_image()), image_id(build_hub_image())
    assert (image_id(build_operator_image()), image_id(build_hub_image())) == before
