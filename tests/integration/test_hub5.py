"""The spawner on JupyterHub 5 (the other tests run JupyterHub 6): start, reach, named servers,
stop, through a second hub installed in .venv-hub5 by dev/python.sh."""

from __future__ import annotations

import pytest

from .stack import HUB_PORT_BASE, STATE, squeue, wait_for
from .test_hub import hub_stack, job_of, start_server, through_proxy

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
CLUSTER = "e2e-hub5"


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(
        kubeconfig,
        custom,
        core,
        CLUSTER,
        "jupyterhub-e2e5",
        state=STATE / "hub5",
        port_base=HUB_PORT_BASE + 200,
        venv=".venv-hub5",
    )


def test_jupyterhub_5_start_reach_stop(hub, custom):
    _, info = hub.api("GET", "/")
    assert info["version"].startswith("5."), info
    start_server(hub, "alice", {"cluster": CLUSTER, "profile": "small"})
    start_server(hub, "alice", {"cluster": CLUSTER, "profile": "small"}, name="second")

    nb = job_of(custom, hub.namespace, "alice")
    assert [j["user"] for j in squeue(f"bnb-{nb['metadata']['uid']}")] == ["alice"]
    assert through_proxy(hub, "/user/alice/api/status")[0] == 200
    assert through_proxy(hub, "/user/alice/second/api/status")[0] == 200
    for path in ("/users/alice/server", "/users/alice/servers/second"):
        hub.api("DELETE", path)
    wait_for(
        lambda: not any(hub.api("GET", "/users/alice")[1]["servers"].values()),
        120,
        "both servers to stop",
    )
