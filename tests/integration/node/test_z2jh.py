"""The hub as sites run it, from Zero to JupyterHub's chart (z2jh.py), with servers on Slurm:
started through the proxy pod, surviving the operator's and the hub's pods replaced, also while a
spawn waits in the queue; job reports reach the operator through the proxy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from devstack.deploy import HUB_NAMESPACE, NOTEBOOKS, helm

from ..stack import REPO, squeue, wait_for
from .z2jh import one_running_job, queued_spawn, reachable, replace_pod, server_of, start

pytestmark = [pytest.mark.node, pytest.mark.slurm, pytest.mark.e2e]


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


def test_the_sweeper_in_the_hubs_pod_deletes_what_the_hub_does_not_have(z2jh):
    """A BatchNotebook of a server the hub does not have (one it forgot) goes within two of the
    sweeper's rounds (60 s each); the hub's own server beside it stays."""
    server, notebook = start(z2jh, "bob", "swept")
    ghost = f"nb-bob--ghost-{uuid.uuid4().hex[:6]}"
    manifest = {
        "apiVersion": notebook["apiVersion"],
        "kind": notebook["kind"],
        "metadata": {"name": ghost, "labels": notebook["metadata"]["labels"]},
        "spec": {**notebook["spec"], "serverName": "ghost", "envSecretName": f"{ghost}-env"},
    }
    z2jh.node.kubectl("-n", NOTEBOOKS, "create", "-f", "-", input=json.dumps(manifest))

    def names() -> set[str]:
        listing = json.loads(z2jh.node.kubectl("-n", NOTEBOOKS, "get", "bnb", "-o", "json"))
        return {n["metadata"]["name"] for n in listing["items"]}

    wait_for(lambda: ghost not in names(), 240, "the sweeper to delete the ghost notebook")
    assert notebook["metadata"]["name"] in names()
    assert server_of(z2jh, "bob", "swept")["ready"] and reachable(z2jh, server)
    z2jh.api("DELETE", "/users/bob/servers/swept", {"remove": True})
