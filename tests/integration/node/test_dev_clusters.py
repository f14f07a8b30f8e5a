"""The BatchClusters `make dev` creates (dev/clusters/, rendered by devstack.dev), on the product
as deployed here: from the operator's pod each reaches its scheduler the way a site's is reached
(SSH to the login node, slurmrestd), and a server on it is reached through Zero to JupyterHub's
proxy pod, as a new user of `make dev` finds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from devstack.deploy import NOTEBOOKS
from devstack.dev import CLUSTERS, placeholders, render

from ..stack import REPO, run, wait_for
from .z2jh import apply_cluster, delete_cluster, reachable, ready_server

pytestmark = [pytest.mark.node, pytest.mark.e2e]

TEMPLATES = sorted(CLUSTERS.glob("*.yaml.in"))
USER = "alice"


@pytest.fixture(scope="module")
def grid_engine():
    run(REPO / "dev/sge.sh", "install")
    run(REPO / "dev/sge.sh", "start")


def test_make_dev_has_a_cluster_per_scheduler_and_slurm_transport():
    names = {yaml.safe_load(path.read_text().replace("@", ""))["metadata"]["name"] for path in
             TEMPLATES}  # fmt: skip
    assert names == {
        "local", "slurm-rest", "trixie", "trixie-rest", "sge", "pbspro", "torque", "moab", "lsf",
        "htcondor",
    }  # fmt: skip


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name.split(".")[0])
def test_a_make_dev_cluster_serves_a_notebook_through_the_proxy_pod(
    z2jh, grid_engine, template: Path
):
    node = z2jh.node
    manifest = yaml.safe_load(render(template, placeholders(node, z2jh.url)))
    assert manifest["spec"]["callbackURL"] == f"{z2jh.url}/services/batchnotebook"
    assert manifest["spec"]["connection"]["type"] in ("ssh", "slurmrest")
    name = f"dev-{manifest['metadata']['name']}"  # beside the tests' own clusters
    apply_cluster(node, name, manifest["spec"])
    server_name = name.removeprefix("dev-")
    try:
        server = ready_server(z2jh, USER, {"cluster": name, "profile": "small"}, server_name)
        assert reachable(z2jh, server)
        status = json.loads(node.kubectl("get", "bcl", name, "-o", "jsonpath={.status}"))
        assert {"type": "SchedulerReachable", "status": "True"}.items() <= next(
            c for c in status["conditions"] if c["type"] == "SchedulerReachable"
        ).items()
        [notebook] = notebooks_on(node, name)
        assert notebook["spec"]["unixUser"] == USER
        # This machine's schedulers run jobs on `vm`; the 24.11 site on its own compute nodes,
        # which the proxy pod reached at their own addresses.
        site_nodes = ("tx-c1", "tx-c2") if name.startswith("dev-trixie") else ("vm",)
        assert notebook["status"]["execHost"] in site_nodes
        code, answer = z2jh.api("DELETE", f"/users/{USER}/servers/{server_name}", {"remove": True})
        assert code in (202, 204), answer
        wait_for(lambda: not notebooks_on(node, name), 120, f"{USER}'s notebook on {name} to go")
    finally:
        delete_cluster(node, name)


def notebooks_on(node, cluster: str) -> list[dict]:
    items = json.loads(node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    return [n for n in items if n["spec"]["clusterName"] == cluster]
