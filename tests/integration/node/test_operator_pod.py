"""The operator as sites run it: `helm install` of charts/batchnotebook on the real node, the image
from our Dockerfile, uid 10001 on a read-only root filesystem with its own ServiceAccount, Ready
by its probes. From inside the pod it reaches the login node over SSH (dev/sshd.sh) or Slurm's
REST API, both listening on this machine's end of the node's veth pair (devstack.deploy), submits
to the real Slurm, takes the job's report through its Service (a NodePort here, the hub's proxy
in production) and writes the status."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest

from devstack.deploy import (
    NOTEBOOKS,
    OPERATOR_SERVICE,
    SYSTEM,
    slurmrest_connection,
    ssh_connection,
)

from ..conftest import GROUP, VERSION, cluster_spec
from ..stack import squeue, wait_for
from .deployment import REPORT_NODE_PORT, operator_exec

pytestmark = [pytest.mark.node, pytest.mark.slurm]


def test_the_operator_pod_runs_as_10001_on_a_read_only_root(operator_pod):
    assert operator_exec(operator_pod, "id", "-u").stdout.strip() == "10001"
    written = operator_exec(operator_pod, "touch", "/opt/batchnotebook/x")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    pod = json.loads(operator_pod.kubectl("-n", SYSTEM, "get", "pods", "-o", "json"))["items"][0]
    assert pod["spec"]["serviceAccountName"] == OPERATOR_SERVICE
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"  # its readiness and liveness probes pass


@pytest.mark.parametrize("transport", ["ssh", "slurmrest"])
def test_from_its_pod_it_submits_and_takes_the_report_through_its_service(operator_pod, transport):
    """Over SSH to the login node, or to slurmrestd, both on this machine's end of the veth."""
    node = operator_pod
    cluster = f"pod-{transport}-{uuid.uuid4().hex[:6]}"
    connection = {"ssh": ssh_connection, "slurmrest": slurmrest_connection}[transport]
    spec = cluster_spec(
        connection=connection(node),
        callbackURL=f"http://{node.network.node_address}:{REPORT_NODE_PORT}/services/batchnotebook",
        # The jobs run on `vm`, which the node's DNS names at this machine's end of the veth.
        execHosts={"patterns": ["vm"]},
    )
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchCluster",
                          "metadata": {"name": cluster}, "spec": spec}),
    )  # fmt: skip
    name = f"nb-alice-{uuid.uuid4().hex[:6]}"
    token = secrets.token_urlsafe(16)
    env = {"JUPYTERHUB_USER": "alice", "BATCHNOTEBOOK_REPORT_TOKEN": token,
           "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/user/alice/"}  # fmt: skip
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchNotebook",
                          "metadata": {"name": name, "namespace": NOTEBOOKS},
                          "spec": {"clusterName": cluster, "profile": "small", "hubUser": "alice",
                                   "unixUser": "alice", "envSecretName": f"{name}-env"}}),
    )  # fmt: skip
    uid = node.kubectl("-n", NOTEBOOKS, "get", "bnb", name, "-o", "jsonpath={.metadata.uid}")
    node.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{name}-env", "namespace": NOTEBOOKS,
                                       "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}",
                                                            "kind": "BatchNotebook", "name": name,
                                                            "uid": uid}]},
                          "data": {k: base64.b64encode(v.encode()).decode()
                                   for k, v in env.items()}}),
    )  # fmt: skip

    def status() -> dict:
        out = node.kubectl("-n", NOTEBOOKS, "get", "bnb", name, "-o", "jsonpath={.status}")
        return json.loads(out or "{}")

    try:
        ready = wait_for(lambda: (s := status()).get("phase") == "Ready" and s, 180, "Ready")
        assert ready["execHost"] == "vm" and f"//vm:{ready['port']}" in ready["url"]
        # A pod reaches the job where the status says it is, as the hub's proxy will.
        fetch = f"import urllib.request as u; print(u.urlopen({ready['url']!r}).read().decode())"
        fetched = operator_exec(node, "python", "-c", fetch)
        assert fetched.stdout.startswith("stand-in for alice as uid "), fetched.stderr
        jobs = squeue(f"bnb-{uid}")
        assert [(j["id"], j["user"], j["state"]) for j in jobs] == [
            (ready["jobId"], "alice", "RUNNING")
        ]
        reachable = json.loads(
            node.kubectl("get", "bcl", cluster, "-o", "jsonpath={.status.conditions}")
        )
        assert {c["type"]: c["status"] for c in reachable}["SchedulerReachable"] == "True"
    finally:
        node.kubectl("-n", NOTEBOOKS, "delete", "bnb", name, "--timeout=120s")
    wait_for(
        lambda: all(j["state"] != "RUNNING" for j in squeue(f"bnb-{uid}")),
        60,
        "the job to be cancelled",
    )
    node.kubectl("delete", "bcl", cluster, "--timeout=60s")
