"""jupyterhub-idle-culler, run by the hub as a service, stops an idle server; stopping it cancels
the batch job and removes the BatchNotebook, so the node goes back to the queue."""

from __future__ import annotations

import pytest

from .stack import HUB_PORT_BASE, STATE, squeue, wait_for
from .test_hub import hub_stack, job_of, notebooks, start_server

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
CLUSTER = "e2e-culler"
IDLE_SECONDS = 30


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(
        kubeconfig,
        custom,
        core,
        CLUSTER,
        "jupyterhub-culler",
        state=STATE / "hub-culler",
        port_base=HUB_PORT_BASE + 500,
        extra_env={"IDLE_CULL_TIMEOUT": IDLE_SECONDS, "IDLE_CULL_EVERY": 10},
    )


def test_an_idle_server_is_culled_and_its_job_cancelled(hub, custom):
    start_server(hub, "bob", {"cluster": CLUSTER, "profile": "small"}, name="idle")
    notebook = job_of(custom, hub.namespace, "bob", "idle")
    job_name = f"bnb-{notebook['metadata']['uid']}"
    assert [j["state"] for j in squeue(job_name)] == ["RUNNING"]

    # Nobody uses it: the culler stops it after IDLE_SECONDS (and at most one round more).
    wait_for(lambda: hub.server("bob", "idle") is None, 180, "the culler to stop the server")
    wait_for(
        lambda: all(j["state"] not in ("RUNNING", "PENDING") for j in squeue(job_name)),
        120,
        "the batch job to be cancelled",
    )
    uids = {i["metadata"]["uid"] for i in notebooks(custom, hub.namespace)}
    assert notebook["metadata"]["uid"] not in uids
    _, user = hub.api("GET", "/users/bob")
    assert user["servers"] == {} or "idle" not in user["servers"]
