"""Zero to JupyterHub as sites run it, for the deployment tests: its chart (4.4.0, from outside
our tree) installed with our charts/batchnotebook/examples/z2jh-values.yaml plus only what a
one-node test cluster needs: the images built here, a NodePort for the proxy, the hub's database
on a hostPath volume, no volumes for pod servers, the hub's public URL, a pod profile and a
password for the browser. The hub pod runs BatchNotebookSpawner; the proxy pod sends
/services/batchnotebook/ to the operator's Service and users to their servers: batch jobs on
this machine, which report through the hub's public URL as in production, or pods on the node."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator

import yaml
from devstack.images import load
from devstack.node import Node
from devstack.product import HUB_IMAGE, build_hub_image
from devstack.standins import build_proxy, build_singleuser, vendor_z2jh

from ..conftest import GROUP, VERSION, cluster_spec
from ..stack import REPO, slurm_template_starting, squeue, wait_for
from .deployment import HUB_NAMESPACE, NOTEBOOKS, helm, ssh_connection

PROXY_NODE_PORT = 30800
CLUSTER = "hpc"
LATE_CLUSTER = "late"  # like CLUSTER, but its jobs wait in the queue for 45 s
POD_PROFILE = "pod"


class ZeroToJupyterHub:
    """The installed hub as its users reach it: through the proxy's NodePort."""

    def __init__(self, node: Node, token: str, password: str) -> None:
        self.node, self.token, self.password = node, token, password
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


def overrides(hub: ZeroToJupyterHub) -> dict:
    """What a one-node test cluster needs beyond the example values."""
    repository, tag = HUB_IMAGE.rsplit(":", 1)
    pod_profile = {
        "name": POD_PROFILE,
        "display_name": "Small pod",
        "description": "A server in a pod of this cluster",
        "kubespawner_override": {
            "cpu_limit": 1,
            "cpu_guarantee": 0.1,
            "mem_limit": "1G",
            "mem_guarantee": "256M",
            "environment": {"SITE_GREETING": "hello"},
            "extra_labels": {"site.example/tier": "interactive"},
        },
    }
    return {
        "hub": {
            "image": {"name": repository, "tag": tag, "pullPolicy": "Never"},
            # sqlite on a volume (hub_db_volume): a restarted hub pod keeps its users' servers.
            "db": {"type": "sqlite-pvc"},
            "config": {
                "JupyterHub": {"authenticator_class": "dummy"},
                "DummyAuthenticator": {"password": hub.password},
                "Authenticator": {"allow_all": True},
                "BatchNotebookSpawner": {"hub_connect_url": hub.url,
                                         "pod_profiles": [pod_profile]},
            },
            "services": {"tester": {"apiToken": hub.token}},
            "loadRoles": {"tester": {"services": ["tester"], "scopes": ["admin:users",
                                                                       "admin:servers",
                                                                       "access:servers"]}},
        },
        "proxy": {
            "service": {"type": "NodePort", "nodePorts": {"http": PROXY_NODE_PORT}},
            "chp": {"image": {"pullPolicy": "Never"}},
        },
        "singleuser": {
            "image": {"pullPolicy": "Never"},
            # No storage provisioner on the test node.
            "storage": {"type": "none"},
            "cloudMetadata": {"blockWithIptables": False},
        },
    }  # fmt: skip


def hub_db_volume(node: Node) -> dict:
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


@contextlib.contextmanager
def installed(node: Node) -> Iterator[ZeroToJupyterHub]:
    """`helm install` of Zero to JupyterHub beside our chart's operator (already on `node`), with
    the BatchCluster CLUSTER for its Slurm profiles."""
    node.kubectl("apply", "-f", "-", input=json.dumps(hub_db_volume(node)))
    for image in (build_hub_image(), build_proxy(), build_singleuser()):
        load(node.socket, image)
    hub = ZeroToJupyterHub(node, secrets.token_hex(32), secrets.token_urlsafe(12))
    values = node.state / "z2jh-overrides.yaml"
    values.write_text(yaml.safe_dump(overrides(hub)))
    values.chmod(0o600)
    apply_cluster(node, CLUSTER, cluster_spec(
        connection=ssh_connection(node),
        callbackURL=f"{hub.url}/services/batchnotebook",
        execHosts={"patterns": ["vm"]},
        jupyterCommand=["/opt/batchnotebook/jobenv/bin/jupyterhub-singleuser"],
    ))  # fmt: skip
    try:
        helm(
            node,
            *("install", "jupyterhub", str(vendor_z2jh() / "jupyterhub"), "-n", HUB_NAMESPACE),
            *("--create-namespace", "--wait", "--timeout", "8m"),
            *("-f", str(REPO / "charts/batchnotebook/examples/z2jh-values.yaml")),
            *("-f", str(values)),
        )
        yield hub
    finally:
        helm(node, "uninstall", "jupyterhub", "-n", HUB_NAMESPACE, "--wait", check=False)
        node.kubectl("delete", "bcl", CLUSTER, "--timeout=60s")


def apply_cluster(node: Node, name: str, spec: dict) -> None:
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchCluster",
                          "metadata": {"name": name}, "spec": spec}),
    )  # fmt: skip


@contextlib.contextmanager
def late_cluster(node: Node) -> Iterator[str]:
    """LATE_CLUSTER: like CLUSTER, but its jobs start 45 s after they are submitted, so a spawn
    waits in the queue meanwhile."""
    spec = json.loads(node.kubectl("get", "bcl", CLUSTER, "-o", "jsonpath={.spec}"))
    apply_cluster(node, LATE_CLUSTER, {**spec, "jobTemplate": slurm_template_starting("now+45")})
    try:
        yield LATE_CLUSTER
    finally:
        node.kubectl("delete", "bcl", LATE_CLUSTER, "--timeout=120s")


def ready_server(z2jh: ZeroToJupyterHub, user: str, options: dict, name: str = "") -> dict:
    """Starts a server through the hub's REST API; returns the hub's record of it once ready."""
    path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
    code, answer = z2jh.api("POST", f"/users/{user}")
    assert code in (201, 409), answer
    code, answer = z2jh.api("POST", path, options)
    assert code in (201, 202), answer
    return wait_for(
        lambda: (s := server_of(z2jh, user, name)) and s.get("ready") and s,
        240,
        f"{user}'s server {name!r} to be ready",
    )


def start(z2jh: ZeroToJupyterHub, user: str, name: str = "") -> tuple[dict, dict]:
    """A server of CLUSTER's small profile, ready: the hub's record of it and its BatchNotebook."""
    server = ready_server(z2jh, user, {"cluster": CLUSTER, "profile": "small"}, name)
    notebooks = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    (notebook,) = [
        n for n in notebooks if n["spec"]["hubUser"] == user and n["spec"]["serverName"] == name
    ]
    return server, notebook


def server_of(z2jh: ZeroToJupyterHub, user: str, name: str = "") -> dict | None:
    return ((z2jh.api("GET", f"/users/{user}")[1] or {}).get("servers") or {}).get(name)


def reachable(z2jh: ZeroToJupyterHub, server: dict) -> bool:
    try:
        code, body = z2jh.get(f"{server['url']}api/status")
    except OSError:  # the proxy is being reconfigured
        return False
    return code == 200 and "last_activity" in json.loads(body)


def one_running_job(notebook: dict) -> str:
    jobs = squeue(f"bnb-{notebook['metadata']['uid']}")
    assert [(j["user"], j["state"]) for j in jobs] == [(notebook["spec"]["unixUser"], "RUNNING")]
    return jobs[0]["id"]


def replace_pod(node: Node, namespace: str, selector: str, deployment: str) -> None:
    """Deletes the pods of a Deployment and waits for the new one to be Ready."""
    before = node.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "name").split()
    node.kubectl("-n", namespace, "delete", "pods", "-l", selector, "--wait=true")
    node.kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", "--timeout=300s")
    after = node.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "name").split()
    assert after and not set(after) & set(before)


def queued_spawn(z2jh: ZeroToJupyterHub, cluster: str, user: str, name: str) -> dict:
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
