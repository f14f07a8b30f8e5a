"""The hub as sites run it: Zero to JupyterHub's chart (4.4.0, from outside our tree) installed
with our charts/batchnotebook/examples/z2jh-values.yaml plus only what a one-node test cluster
needs: the images built here, a NodePort for the proxy, a database without a volume, and the
hub's public URL. The hub pod runs BatchNotebookSpawner; the proxy pod sends
/services/batchnotebook/ to the operator's Service and users to their servers, which run as
batch jobs on this machine and report through the hub's public URL, as in production."""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from devstack.images import load
from devstack.product import HUB_IMAGE, build_hub_image
from devstack.standins import build_proxy, vendor_z2jh

from ..conftest import GROUP, VERSION, cluster_spec
from ..stack import REPO, slurm_template_starting, squeue, wait_for
from .deployment import HUB_NAMESPACE, NOTEBOOKS, helm, need_z2jh, ssh_connection

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
            # sqlite on a volume (hub_db_volume): a restarted hub pod keeps its users' servers.
            "db": {"type": "sqlite-pvc"},
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


def hub_db_volume(node) -> dict:
    """A PersistentVolume on the node for the hub's database claim (no provisioner here), in a
    directory the hub's user (1000) owns."""
    path = node.dir / "hub-db"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, 1000, 1000)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "hub-db"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


@pytest.fixture(scope="module")
def z2jh(operator_pod):
    need_z2jh()
    node = operator_pod
    node.kubectl("apply", "-f", "-", input=json.dumps(hub_db_volume(node)))
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


def start(z2jh, user: str, name: str = "") -> tuple[dict, dict]:
    """Starts a server through the hub's REST API; returns the hub's record of it, ready, and
    its BatchNotebook."""
    path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
    code, answer = z2jh.api("POST", f"/users/{user}")
    assert code in (201, 409), answer
    code, answer = z2jh.api("POST", path, {"cluster": CLUSTER, "profile": "small"})
    assert code in (201, 202), answer
    server = wait_for(
        lambda: (s := server_of(z2jh, user, name)) and s.get("ready") and s,
        240,
        f"{user}'s server {name!r} to be ready",
    )
    notebooks = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    (notebook,) = [
        n for n in notebooks if n["spec"]["hubUser"] == user and n["spec"]["serverName"] == name
    ]
    return server, notebook


def server_of(z2jh, user: str, name: str = "") -> dict | None:
    return ((z2jh.api("GET", f"/users/{user}")[1] or {}).get("servers") or {}).get(name)


def reachable(z2jh, server: dict) -> bool:
    try:
        code, body = z2jh.get(f"{server['url']}api/status")
    except OSError:  # the proxy is being reconfigured
        return False
    return code == 200 and "last_activity" in json.loads(body)


def one_running_job(notebook: dict) -> str:
    jobs = squeue(f"bnb-{notebook['metadata']['uid']}")
    assert [(j["user"], j["state"]) for j in jobs] == [(notebook["spec"]["unixUser"], "RUNNING")]
    return jobs[0]["id"]


def replace_pod(node, namespace: str, selector: str, deployment: str) -> None:
    """Deletes the pods of a Deployment and waits for the new one to be Ready."""
    before = node.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "name").split()
    node.kubectl("-n", namespace, "delete", "pods", "-l", selector, "--wait=true")
    node.kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=300s")
    after = node.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "name").split()
    assert after and not set(after) & set(before)


def test_a_server_starts_as_a_batch_job_and_is_reached_through_the_proxy_pod(z2jh):
    server, notebook = start(z2jh, "alice")
    assert one_running_job(notebook) == notebook["status"]["jobId"]
    # Through the proxy pod to the job on this machine: the single-user server answers.
    assert reachable(z2jh, server)
    code, answer = z2jh.api("DELETE", "/users/alice/server")
    assert code in (202, 204), answer
    tag = f"bnb-{notebook['metadata']['uid']}"
    wait_for(
        lambda: all(j["state"] != "RUNNING" for j in squeue(tag)),
        120,
        "the job to end when the server stops",
    )


def test_the_operators_pod_replaced_while_a_server_runs_loses_nothing(z2jh):
    server, notebook = start(z2jh, "bob", "op")
    job = one_running_job(notebook)
    replace_pod(z2jh.node, "batchnotebook-system", "app.kubernetes.io/component=operator",
                "batchnotebook-operator")  # fmt: skip
    # The new operator takes the job up again: the same job, still Ready, still routed.
    after = json.loads(
        z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", notebook["metadata"]["name"], "-o", "json")
    )
    assert after["status"]["phase"] == "Ready" and after["status"]["jobId"] == job
    assert one_running_job(after) == job
    assert server_of(z2jh, "bob", "op")["ready"] and reachable(z2jh, server)
    z2jh.api("DELETE", "/users/bob/servers/op", {"remove": True})


def test_the_hubs_pod_replaced_every_server_survives_and_is_reached_again(z2jh):
    server, notebook = start(z2jh, "alice", "hubgone")
    job = one_running_job(notebook)
    replace_pod(z2jh.node, HUB_NAMESPACE, "component=hub", "hub")
    again = wait_for(
        lambda: (s := server_of(z2jh, "alice", "hubgone")) and s.get("ready") and s,
        120,
        "the new hub to know alice's server",
    )
    assert again["url"] == server["url"]
    wait_for(lambda: reachable(z2jh, again), 60, "the proxy to route to alice's server again")
    assert one_running_job(notebook) == job
    z2jh.api("DELETE", "/users/alice/servers/hubgone", {"remove": True})


@pytest.fixture
def late_cluster(z2jh):
    """A BatchCluster like CLUSTER whose jobs start 45 s after they are submitted: a spawn that
    waits in the queue meanwhile."""
    node = z2jh.node
    spec = json.loads(node.kubectl("get", "bcl", CLUSTER, "-o", "jsonpath={.spec}"))
    spec["jobTemplate"] = slurm_template_starting("now+45")
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchCluster",
                          "metadata": {"name": "late"}, "spec": spec}),
    )  # fmt: skip
    yield "late"
    node.kubectl("delete", "bcl", "late", "--timeout=120s")


def queued_spawn(z2jh, cluster: str, user: str, name: str) -> dict:
    """Asks for a server on `cluster`; returns its BatchNotebook once its job waits in the queue."""
    z2jh.api("POST", f"/users/{user}")
    code, answer = z2jh.api(
        "POST", f"/users/{user}/servers/{name}", {"cluster": cluster, "profile": "small"}
    )
    assert code == 202, answer

    def queued() -> dict | None:
        items = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
        mine = [n for n in items if (n["spec"]["hubUser"], n["spec"]["serverName"]) == (user, name)]
        return mine[0] if mine and mine[0].get("status", {}).get("phase") == "Queued" else None

    return wait_for(queued, 60, f"{user}'s job to wait in the queue")


@pytest.mark.parametrize("restart", ["operator upgraded", "hub pod replaced"])
def test_a_spawn_waiting_in_the_queue_survives(z2jh, late_cluster, restart):
    """`helm upgrade` of the operator, or a new hub pod, while the job waits: still one job, and
    the spawn completes at the address the job reports (the hub asks get_url() on start-up)."""
    name = "upgrade" if restart == "operator upgraded" else "hubwait"
    notebook = queued_spawn(z2jh, late_cluster, "bob", name)
    if restart == "operator upgraded":
        helm(
            z2jh.node,
            *("upgrade", "batchnotebook", str(REPO / "charts/batchnotebook"), "-n"),
            *("batchnotebook-system", "--reuse-values", "--wait", "--timeout", "5m"),
            *("--set", "podAnnotations.upgraded=yes"),
        )
    else:
        replace_pod(z2jh.node, HUB_NAMESPACE, "component=hub", "hub")
    server = wait_for(
        lambda: (s := server_of(z2jh, "bob", name)) and s.get("ready") and s,
        240,
        "bob's server to be ready",
    )
    assert one_running_job(notebook)
    wait_for(lambda: reachable(z2jh, server), 60, "the proxy to route to bob's server")
    z2jh.api("DELETE", f"/users/bob/servers/{name}", {"remove": True})
    tag = f"bnb-{notebook['metadata']['uid']}"
    wait_for(lambda: all(j["state"] != "RUNNING" for j in squeue(tag)), 120, "the job to end")


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
