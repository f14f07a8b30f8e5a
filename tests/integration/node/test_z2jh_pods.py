"""A pod profile of the hub from Zero to JupyterHub's chart (z2jh.py): the spawner's child
KubeSpawner starts a real pod on the node, from the single-user image built here; the proxy pod
routes the user to it, the server checks tokens with the hub through the hub's Service, the
server survives a new hub pod, and stopping it removes the pod and its token's Secret."""

from __future__ import annotations

import base64
import json

import pytest

from batchnotebook_api import GROUP
from devstack.deploy import HUB_NAMESPACE, NOTEBOOKS
from devstack.paths import BIN
from devstack.standins import build_singleuser

from ..stack import run, wait_for
from .z2jh import POD_PROFILE, pods_of, reachable, ready_server, replace_pod, server_of

pytestmark = [pytest.mark.node, pytest.mark.e2e]


def secret(z2jh, name: str) -> dict | None:
    found = z2jh.node.kubectl("-n", NOTEBOOKS, "get", "secret", name, "-o", "json", check=False)
    return json.loads(found) if found else None


def test_a_pod_profile_runs_a_real_pod_reached_through_the_proxy_pod(z2jh):
    server = ready_server(z2jh, "carol", {"pod": POD_PROFILE})
    [pod] = pods_of(z2jh, "carol")
    assert pod["status"]["phase"] == "Running"
    labels = pod["metadata"]["labels"]
    assert labels["component"] == "singleuser-server"
    assert labels[f"{GROUP}/pod-profile"] == POD_PROFILE
    assert labels[f"{GROUP}/hub-user"] == "carol"
    assert labels["site.example/tier"] == "interactive"  # the profile's own
    # Zero to JupyterHub's, which its NetworkPolicy admits to the hub.
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    [container] = pod["spec"]["containers"]
    assert container["image"] == build_singleuser()
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "1073741824"},  # KubeSpawner counts G as 2**30
        "requests": {"cpu": "100m", "memory": "268435456"},
    }
    assert container["securityContext"]["runAsUser"] == 1000  # z2jh's singleuser.uid

    env = {variable["name"]: variable for variable in container["env"]}
    assert env["SITE_GREETING"]["value"] == "hello"
    assert env["JUPYTERHUB_USER"]["value"] == "carol"
    # From the notebooks' namespace the hub is reached by its namespaced Service name.
    assert env["JUPYTERHUB_API_URL"]["value"] == f"http://hub.{HUB_NAMESPACE}.svc:8081/hub/api"
    # The server's API token is in a Secret the pod owns, never in the pod's spec.
    reference = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    token_secret = secret(z2jh, reference["name"])
    assert token_secret
    token = base64.b64decode(token_secret["data"][reference["key"]]).decode()
    assert [o["uid"] for o in token_secret["metadata"]["ownerReferences"]] == [
        pod["metadata"]["uid"]
    ]
    assert token and token not in json.dumps(pod)

    # Through the proxy pod to the pod; the server asked the hub about our token to answer.
    assert reachable(z2jh, server)

    replace_pod(z2jh.node, HUB_NAMESPACE, "component=hub", "hub")
    again = wait_for(
        lambda: (s := server_of(z2jh, "carol")) and s.get("ready") and s,
        120,
        "the new hub to know carol's pod server",
    )
    wait_for(lambda: reachable(z2jh, again), 60, "the proxy to route to carol's pod again")
    assert [p["metadata"]["uid"] for p in pods_of(z2jh, "carol")] == [pod["metadata"]["uid"]]

    code, answer = z2jh.api("DELETE", "/users/carol/server")
    assert code in (202, 204), answer
    wait_for(lambda: server_of(z2jh, "carol") is None, 120, "carol's server to stop")
    wait_for(lambda: not pods_of(z2jh, "carol"), 120, "carol's pod to be deleted")
    assert secret(z2jh, reference["name"]) is None


def test_a_new_hub_pod_follows_a_pod_server_to_its_new_address(z2jh):
    """The server's pod gets a new sandbox, and with it a new address (as when its node
    restarts), while the hub is down: the new hub pod must check and route to the new address
    (it waited http_timeout on the old one, then shut a running server down)."""
    node = z2jh.node
    ready_server(z2jh, "dave", {"pod": POD_PROFILE})
    [pod] = pods_of(z2jh, "dave")
    node.kubectl("-n", HUB_NAMESPACE, "scale", "deployment/hub", "--replicas=0")
    node.kubectl("-n", HUB_NAMESPACE, "wait", "--for=delete", "pod", "-l", "component=hub",
                 "--timeout=120s")  # fmt: skip
    kill_sandbox(node, pod["metadata"]["uid"])

    def moved() -> dict | None:
        [now] = pods_of(z2jh, "dave")
        address, ready = now["status"].get("podIP"), now["status"].get("containerStatuses", [{}])
        return now if address and address != pod["status"]["podIP"] and ready[0].get("ready") \
            else None  # fmt: skip

    wait_for(moved, 120, "dave's pod to run again at a new address")
    node.kubectl("-n", HUB_NAMESPACE, "scale", "deployment/hub", "--replicas=1")
    node.kubectl("-n", HUB_NAMESPACE, "rollout", "status", "deployment/hub", "--timeout=300s")
    try:
        server = wait_for(
            lambda: (s := server_of(z2jh, "dave")) and s.get("ready") and s,
            # Within the hub's http_timeout (300 s), after which a hub checking the old address
            # gives up and stops the server.
            280,
            "the new hub to know dave's pod server",
        )
    except AssertionError as error:
        hub_log = node.kubectl("-n", HUB_NAMESPACE, "logs", "deployment/hub", "--tail=40")
        pods = node.kubectl("-n", NOTEBOOKS, "get", "pods", "-o", "wide")
        raise AssertionError(f"{error}\n--- hub log\n{hub_log}\n--- pods\n{pods}") from None
    wait_for(lambda: reachable(z2jh, server), 60, "the proxy to route to dave's pod")
    assert [p["metadata"]["uid"] for p in pods_of(z2jh, "dave")] == [pod["metadata"]["uid"]]
    code, answer = z2jh.api("DELETE", "/users/dave/server")
    assert code in (202, 204), answer
    wait_for(lambda: not pods_of(z2jh, "dave"), 120, "dave's pod to be deleted")


def kill_sandbox(node, pod_uid: str) -> None:
    """SIGKILL to the pod's sandbox (its pause process): the kubelet makes a new sandbox, with a
    new address, and restarts the pod's containers in it."""
    ctr = [str(BIN / "ctr"), "--address", str(node.socket), "--namespace", "k8s.io"]
    listed = run(*ctr, "containers", "list", "--quiet").stdout.split()
    for container in listed:
        labels = json.loads(run(*ctr, "containers", "info", container).stdout)["Labels"]
        if labels.get("io.kubernetes.pod.uid") == pod_uid and \
                labels.get("io.cri-containerd.kind") == "sandbox":  # fmt: skip
            run(*ctr, "tasks", "kill", "--signal", "SIGKILL", container)
            return
    raise AssertionError(f"no sandbox of pod {pod_uid} among {len(listed)} containers")
