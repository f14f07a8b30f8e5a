"""The sweeper deletes the BatchNotebook of a server the hub forgot, so that its job is cancelled,
and leaves the hub's other servers alone. The hub forgets a server when its stop() fails (it
swallows the error) or when it is killed after recording a stop it had not finished: here the
hub is stopped and its database made to say what such a crash leaves."""

from __future__ import annotations

import sqlite3

import pytest

from .stack import HUB_PORT_BASE, STATE, squeue, wait_for
from .test_hub import hub_stack, job_of, notebooks, start_server

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
CLUSTER = "e2e-sweeper"
SWEEP_EVERY = 3


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(
        kubeconfig,
        custom,
        core,
        CLUSTER,
        "jupyterhub-sweeper",
        state=STATE / "hub-sweeper",
        port_base=HUB_PORT_BASE + 600,
        extra_env={"SWEEP_EVERY": SWEEP_EVERY, "IDLE_CULL_TIMEOUT": 0},
    )


def live(job_name: str) -> bool:
    return any(j["state"] in ("RUNNING", "PENDING") for j in squeue(job_name))


def forget(hub, user: str, name: str) -> None:
    """What a hub killed in the middle of a stop leaves: the server's record gone from its
    database (JupyterHub commits that first), the BatchNotebook and its job still there."""
    hub.processes.hub.stop()
    with sqlite3.connect(hub.state / "jupyterhub.sqlite") as db:
        (spawner_id, server_id) = db.execute(
            "SELECT spawners.id, spawners.server_id FROM spawners JOIN users"
            " ON users.id = spawners.user_id WHERE users.name = ? AND spawners.name = ?",
            (user, name),
        ).fetchone()
        db.execute("UPDATE spawners SET server_id = NULL, started = NULL WHERE id = ?",
                   (spawner_id,))  # fmt: skip
        db.execute("DELETE FROM servers WHERE id = ?", (server_id,))
    hub.processes.start_hub()


def test_a_server_the_hub_forgot_loses_its_notebook_and_job(hub, custom):
    options = {"cluster": CLUSTER, "profile": "small"}
    start_server(hub, "alice", options, name="forgotten")
    start_server(hub, "bob", options, name="kept")
    forgotten = job_of(custom, hub.namespace, "alice", "forgotten")
    kept = job_of(custom, hub.namespace, "bob", "kept")
    forgotten_job, kept_job = (f"bnb-{n['metadata']['uid']}" for n in (forgotten, kept))
    assert live(forgotten_job) and live(kept_job)

    forget(hub, "alice", "forgotten")
    assert hub.server("alice", "forgotten") is None  # the hub has no such server any more

    # Two rounds find it without a server, then it goes, and the operator cancels its job.
    wait_for(
        lambda: (
            forgotten["metadata"]["uid"]
            not in {n["metadata"]["uid"] for n in notebooks(custom, hub.namespace)}
        ),
        10 * SWEEP_EVERY + 60,
        "the sweeper to delete the forgotten server's notebook",
    )
    wait_for(lambda: not live(forgotten_job), 120, "the forgotten server's job to be cancelled")

    # The server the hub has is untouched: same notebook, its job still running, still ready.
    assert (
        job_of(custom, hub.namespace, "bob", "kept")["metadata"]["uid"] == kept["metadata"]["uid"]
    )
    assert live(kept_job)
    assert (hub.server("bob", "kept") or {}).get("ready")
