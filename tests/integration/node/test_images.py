"""Our Dockerfile's two images, built here with buildah on the local stand-ins and run as pods on
the real node: the operator as uid 10001 on a read-only root filesystem, the hub with the
spawner and without the operator's dependencies. An unchanged tree rebuilds nothing."""

from __future__ import annotations

import pytest

from devstack.images import image_id
from devstack.product import build_hub_image, build_operator_image

from .deployment import need_z2jh, run_pod

pytestmark = [pytest.mark.node]
NAMESPACE = "images-test"


@pytest.fixture(scope="module")
def node(cluster_node):
    cluster_node.kubectl("create", "namespace", NAMESPACE)
    yield cluster_node
    cluster_node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_the_operator_image_runs_unprivileged_on_a_read_only_root(node):
    image = build_operator_image()
    said = run_pod(
        node,
        NAMESPACE,
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
        NAMESPACE,
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
