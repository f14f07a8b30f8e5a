"""The real node of the local Kubernetes (dev/devstack): one Ready node whose kubelet runs pods
from locally built images with containerd and runc, ServiceAccount tokens that the API server
accepts, Services by ClusterIP, NodePort and DNS name, and NetworkPolicy objects.

The node has its own stack (state directory, API server and network namespace) beside the one the
other tests share, so nothing here depends on or disturbs them."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from devstack.images import load
from devstack.standins import build_python_standin

from ..stack import run, wait_for
from .deployment import run_pod

NAMESPACE = "node-test"

pytestmark = [pytest.mark.node]


@pytest.fixture(scope="module")
def node(cluster_node):
    """The node, with a web server behind a NodePort in namespace node-test."""
    image = build_python_standin()
    load(cluster_node.socket, image)
    cluster_node.kubectl("apply", "-f", "-", input=manifests(image))
    yield cluster_node
    cluster_node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def manifests(image: str) -> str:
    """A namespace with a web server (python's http.server) behind a ClusterIP and a NodePort
    Service, and a NetworkPolicy like our chart's."""
    server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "http.server", "8080", "-d", "/etc"],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080}},
                            "securityContext": {
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}],
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    return "\n---\n".join(json.dumps(m) for m in (namespace, server, service, policy))


def test_one_node_is_ready(node):
    nodes = json.loads(node.kubectl("get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["batchnotebook-node"]
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    addresses = {a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}
    assert addresses["InternalIP"] == node.network.node_address


def test_a_deployment_serves_through_its_node_port(node):
    node.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/web", "--timeout=180s")
    url = f"http://{node.network.node_address}:30080/hostname"
    body = wait_for(lambda: _get(url), 60, "the NodePort to answer")
    pod = node.kubectl("-n", NAMESPACE, "get", "pods", "-l", "app=web", "-o", "name")
    assert body.strip() == pod.strip().removeprefix("pod/")
    # the logs come from the kubelet, through the API server's client certificate
    assert "GET /hostname" in node.kubectl("-n", NAMESPACE, "logs", "deployment/web")


def test_a_pod_finds_services_by_name_and_calls_the_api_with_its_token(node):
    node.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/web", "--timeout=180s")
    said = run_pod(
        node,
        NAMESPACE,
        "client",
        build_python_standin(),
        "import json, socket, ssl, urllib.request\n"
        "print(socket.gethostbyname('web'))\n"
        "print(urllib.request.urlopen('http://web/hostname', timeout=10).read().decode())\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "context = ssl.create_default_context(cafile=sa + 'ca.crt')\n"
        "request = urllib.request.Request('https://kubernetes.default.svc/version',\n"
        "    headers={'Authorization': 'Bearer ' + open(sa + 'token').read()})\n"
        "print(json.load(urllib.request.urlopen(request, context=context))['gitVersion'])\n",
        timeout=120,
    )
    service_ip, hostname, version = said.split()
    assert service_ip == node.kubectl(
        "-n", NAMESPACE, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert hostname.startswith("web-")
    assert version.startswith("v1.")


def test_the_network_policy_is_stored(node):
    stored = json.loads(node.kubectl("-n", NAMESPACE, "get", "networkpolicy", "web", "-o", "json"))
    assert stored["spec"]["podSelector"] == {"matchLabels": {"app": "web"}}


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None


def test_containers_run_under_the_nodes_cgroup_root(node):
    """Pods go under the node's own cgroup root, so another stack's kubelet never sees them."""
    root = Path("/sys/fs/cgroup/memory") / f"batchnotebook-{node.network.index}"
    assert (root / "kubepods").is_dir()
    assert run("ip", "netns", "list").stdout.count(node.network.netns) == 1
