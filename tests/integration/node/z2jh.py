"""Zero to JupyterHub as sites run it, for the deployment tests: its chart (4.4.0, from outside
our tree) installed by devstack.deploy with our charts/batchnotebook/examples/z2jh-values.yaml
plus what a one-node cluster needs, here with a pod profile, a password for the browser and a
service token for the REST API. The hub pod runs BatchNotebookSpawner; the proxy pod sends
/services/batchnotebook/ to the operator's Service and users to their servers: batch jobs on
this machine, which report through the hub's public URL as in production, or pods on the node."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from devstack.deploy import (
    NOTEBOOKS,
    PROXY_NODE_PORT,
    install_z2jh,
    ssh_connection,
    uninstall_z2jh,
    z2jh_overrides,
)
from devstack.node import Node

from ..conftest import GROUP, VERSION, cluster_spec
from ..stack import slurm_template_starting, squeue, wait_for

CLUSTER = "hpc"
LATE_CLUSTER = "late"  # like CLUSTER, but its jobs wait in the queue for 45 s
POD_PROFILE = "pod"


class ZeroToJupyterHub:
    """The installed hub as its users reach it: through the proxy's NodePort."""

    def __init__(self, node: Node, token: str, password: str) -> None:
        self.node, self.token, self.password = node, token, password
        self.url = f"http://{node.network.node_address}:{PROXY_NODE_PORT}"

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        """The hub's REST API through the proxy. While a new hub pod starts, the proxy answers
        503 in plain text, or nothing for a while: a client waits for the hub, as a user's
        browser retries."""
        deadline = time.monotonic() + 90
        while True:
            try:
                code, answer = self._api_once(method, path, body)
            except OSError:  # no answer in 30 s, or refused, while the hub starts
                if time.monotonic() > deadline:
                    raise
                continue
            if code not in (502, 503) or time.monotonic() > deadline:
                return code, answer
            time.sleep(1)

    def _api_once(self, method: str, path: str, body: dict | None) -> tuple[int, dict | None]:
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
            text = error.read()
            try:
                return error.code, json.loads(text or b"null")
            except ValueError:  # the proxy's own error page
                return error.code, {"message": text.decode(errors="replace")}

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


POD_PROFILES = [
    {
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
]


@contextlib.contextmanager
def installed(node: Node) -> Iterator[ZeroToJupyterHub]:
    """`helm install` of Zero to JupyterHub beside our chart's operator (already on `node`), with
    the BatchCluster CLUSTER for its Slurm profiles."""
    hub = ZeroToJupyterHub(node, secrets.token_hex(32), secrets.token_urlsafe(12))
    apply_cluster(node, CLUSTER, cluster_spec(
        connection=ssh_connection(node),
        callbackURL=f"{hub.url}/services/batchnotebook",
        execHosts={"patterns": ["vm"]},
        jupyterCommand=["/opt/batchnotebook/jobenv/bin/jupyterhub-singleuser"],
    ))  # fmt: skip
    try:
        install_z2jh(node, z2jh_overrides(hub.url, hub.token, hub.password, POD_PROFILES))
        yield hub
    finally:
        uninstall_z2jh(node)
        delete_cluster(node, CLUSTER)


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
        delete_cluster(node, LATE_CLUSTER)


def delete_cluster(node: Node, name: str) -> None:
    """Deletes a BatchCluster, first the notebooks a failed test left on it (a cluster in use
    waits for them; the hub does not stop servers when it is uninstalled)."""
    items = json.loads(node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))["items"]
    names = [n["metadata"]["name"] for n in items if n["spec"]["clusterName"] == name]
    if names:
        node.kubectl("-n", NOTEBOOKS, "delete", "bnb", *names, "--timeout=120s", check=False)
    node.kubectl("delete", "bcl", name, "--timeout=120s", check=False)


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


def pods_of(z2jh: ZeroToJupyterHub, user: str) -> list[dict]:
    """The user's pod-profile pods."""
    answer = z2jh.node.kubectl(
        "-n", NOTEBOOKS, "get", "pods", "-l", f"hub.jupyter.org/username={user}", "-o", "json"
    )
    return json.loads(answer)["items"]


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
