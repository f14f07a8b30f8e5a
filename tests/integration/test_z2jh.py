"""The hub as sites run it: Zero to JupyterHub's chart (4.4.0, from outside our tree) installed
with our charts/batchnotebook/examples/z2jh-values.yaml plus only what a one-node test cluster
needs: the images built here, a NodePort for the proxy, a database without a volume, and the
hub's public URL. The hub pod runs BatchNotebookSpawner; the proxy pod sends
/services/batchnotebook/ to the operator's Service and users to their servers, which run as
batch jobs on this machine and report through the hub's public URL, as in production."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from devstack.images import load
from devstack.product import HUB_IMAGE, build_hub_image
from devstack.standins import build_proxy, vendor_z2jh

from .conftest import GROUP, VERSION, cluster_spec
from .deployment import HUB_NAMESPACE, NOTEBOOKS, helm, ssh_connection
from .stack import REPO, squeue, wait_for

pytestmark = [pytest.mark.node, pytest.mark.slurm, pytest.mark.e2e]

PROXY_NODE_PORT = 30800
CLUSTER = "hpc"


class ZeroToJupyterHub:
    def __init__(self, node, token: str) -> None:
        self.node, self.token = node, token
        self.url = f"http://{node.network.node_address}:{PROXY_NODE_PORT}"

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def overrides(node, token: str) -> dict:
    """What a one-node test cluster needs beyond the example values."""
    repository, tag = HUB_IMAGE.rsplit(":", 1)
    public = f"http://{node.network.node_address}:{PROXY_NODE_PORT}"
    return {
        "hub": {
            "image": {"name": repository, "tag": tag, "pullPolicy": "Never"},
            "db": {"type": "sqlite-memory"},
            "config": {
                "JupyterHub": {"authenticator_class": "dummy"},
                "BatchNotebookSpawner": {"hub_connect_url": public},
            },
            "services": {"tester": {"apiToken": token}},
            "loadRoles": {"tester": {"services": ["tester"], "scopes": ["admin:users",
                                                                       "admin:servers",
                                                                       "access:servers"]}},
        },
        "proxy": {
            "service": {"type": "NodePort", "nodePorts": {"http": PROXY_NODE_PORT}},
            "chp": {"image": {"pullPolicy": "Never"}},
        },
        "singleuser": {"cloudMetadata": {"blockWithIptables": False}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def z2jh(operator_pod):
    node = operator_pod
    load(node.socket, build_hub_image())
    load(node.socket, build_proxy())
    token = secrets.token_hex(32)
    values = node.state / "z2jh-overrides.yaml"
    values.write_text(yaml.safe_dump(overrides(node, token)))
    values.chmod(0o600)
    hub = ZeroToJupyterHub(node, token)
    spec = cluster_spec(
        connection=ssh_connection(node),
        callbackURL=f"{hub.url}/services/batchnotebook",
        execHosts={"patterns": ["vm"]},
        jupyterCommand=["/opt/batchnotebook/jobenv/bin/jupyterhub-singleuser"],
    )
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchCluster",
                          "metadata": {"name": CLUSTER}, "spec": spec}),
    )  # fmt: skip
    helm(
        node,
        *("install", "jupyterhub", str(vendor_z2jh() / "jupyterhub"), "-n", HUB_NAMESPACE),
        *("--create-namespace", "--wait", "--timeout", "8m"),
        *("-f", str(REPO / "charts/batchnotebook/examples/z2jh-values.yaml"), "-f", str(values)),
    )
    yield hub
    helm(node, "uninstall", "jupyterhub", "-n", HUB_NAMESPACE, "--wait", check=False)
    node.kubectl("delete", "bcl", CLUSTER, "--timeout=60s")


def test_a_server_starts_as_a_batch_job_and_is_reached_through_the_proxy_pod(z2jh):
    code, answer = z2jh.api("POST", "/users/alice")
    assert code in (201, 409), answer
    code, answer = z2jh.api("POST", "/users/alice/server", {"cluster": CLUSTER, "profile": "small"})
    assert code in (201, 202), answer
    server = wait_for(
        lambda: ((z2jh.api("GET", "/users/alice")[1] or {}).get("servers") or {}).get(""),
        20,
        "the hub to list alice's server",
    )
    wait_for(
        lambda: (z2jh.api("GET", "/users/alice")[1]["servers"].get("") or {}).get("ready"),
        240,
        "alice's server to be ready",
    )
    notebook = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    assert len(notebook) == 1
    status = notebook[0]["status"]
    jobs = squeue(f"bnb-{notebook[0]['metadata']['uid']}")
    assert [(j["id"], j["user"], j["state"]) for j in jobs] == [
        (status["jobId"], "alice", "RUNNING")
    ]
    # Through the proxy pod to the job on this machine: the single-user server answers for alice.
    code, body = z2jh.get(f"{server['url']}api/status")
    assert code == 200, body
    assert "last_activity" in json.loads(body)
    code, answer = z2jh.api("DELETE", "/users/alice/server")
    assert code in (202, 204), answer
    tag = f"bnb-{notebook[0]['metadata']['uid']}"
    wait_for(
        lambda: all(j["state"] != "RUNNING" for j in squeue(tag)),
        120,
        "the job to end when the server stops",
    )


def test_the_proxy_sends_job_reports_to_the_operator(z2jh):
    """A report with a wrong token reaches the operator through the proxy pod, which refuses it
    with its own JSON answer (the hub would answer with a page)."""
    request = urllib.request.Request(
        f"{z2jh.url}/services/batchnotebook/v1/report/{NOTEBOOKS}/nb-{uuid.uuid4().hex[:6]}",
        method="POST",
        data=json.dumps({"host": "vm", "port": 8888}).encode(),
        headers={"Authorization": "Bearer not-a-token", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code in (401, 403, 404), refused.value.read()
    assert refused.value.headers["Content-Type"].startswith("application/json")
