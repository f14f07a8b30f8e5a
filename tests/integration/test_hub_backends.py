"""End to end on every scheduler and every transport: one real JupyterHub with its proxy, the
operator, and the real jupyterhub-singleuser running as alice's batch job, on Slurm (command line,
ssh to a login node, slurmrestd), Grid Engine, and the PBS Pro, Torque, Moab, LSF and HTCondor
emulators. Each scheduler is asked itself whose the job is, that it runs, and that it ended."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import GROUP, SSHD_DIR, VERSION
from .emulated import SPOOL, emulated_cluster
from .stack import HUB_PORT_BASE, REPO, STATE, run, squeue, wait_for
from .test_hub import (
    answers_through_proxy,
    hub_stack,
    job_of,
    notebooks,
    start_server,
    through_proxy,
)
from .test_sge import qacct, qstat_jobs
from .test_slurmrest import JWT_KEY, rest_connection
from .test_ssh import ssh_connection

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.e2e]
#: the hub's own cluster: Slurm on the command line
CLUSTER = "e2e-backends"
EMULATED = ["pbspro", "torque", "moab", "lsf", "htcondor"]
#: the queue each emulator knows by default (HTCondor has none)
EMULATED_QUEUE = {"pbspro": "workq", "torque": "batch", "moab": "batch", "lsf": "normal"}


@dataclass(frozen=True)
class Backend:
    """A BatchCluster on one scheduler, and that scheduler's own view of a notebook's job
    (found by the jobName and jobId in the notebook's status)."""

    cluster: str
    #: (owner, state) of the job, in the scheduler's words; None if it does not know the job
    job: Callable[[dict], tuple[str, str] | None]
    #: the scheduler's word for a running job
    running: str
    #: the scheduler says the job ended because it was cancelled
    cancelled: Callable[[dict], bool]


def slurm_job(status: dict) -> tuple[str, str] | None:
    jobs = squeue(status["jobName"])
    return (jobs[0]["user"], jobs[0]["state"]) if jobs else None


def slurm_cancelled(status: dict) -> bool:
    job = slurm_job(status)
    return job is not None and job[1] == "CANCELLED"


def emulator_record(dialect: str, job_id: str) -> dict | None:
    """The emulator's own record of a job (its spool, tests/emulators/core.py)."""
    for path in (SPOOL / dialect / "jobs").glob("*.json"):
        record = json.loads(path.read_text())
        if record["job_id"] == job_id:
            return record
    return None


def emulated_backend(cluster: str, dialect: str) -> Backend:
    def job(status: dict) -> tuple[str, str] | None:
        record = emulator_record(dialect, status["jobId"])
        return (record["owner"], record["state"]) if record else None

    def cancelled(status: dict) -> bool:
        record = emulator_record(dialect, status["jobId"])
        return bool(record) and record["state"] == "completed" and record["cancelled_by"] == "alice"

    return Backend(cluster, job, "running", cancelled)


def sge_job(status: dict) -> tuple[str, str] | None:
    jobs = qstat_jobs(status["jobName"])
    return (jobs[0]["user"], jobs[0]["state"]) if jobs else None


def sge_cancelled(status: dict) -> bool:
    """Gone from the queue, and accounted as deleted (failed 100: killed after it started)."""
    if qstat_jobs(status["jobName"]):
        return False
    return qacct(status["jobId"]).get("failed", "").startswith("100")


def small(**defaults) -> list[dict]:
    return [
        {
            "name": "small",
            "defaults": {"cpus": 1, "memory": "1G", "walltime": "01:00:00", **defaults},
        }
    ]


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(
        kubeconfig,
        custom,
        core,
        CLUSTER,
        "jupyterhub-backends",
        state=STATE / "hub-backends",
        port_base=HUB_PORT_BASE + 300,
    )


@pytest.fixture(params=["slurm-local", "slurm-ssh", "slurm-rest", "sge", *EMULATED])
def backend(request, hub, custom, make_cluster, operator_secret) -> Iterator[Backend]:
    """A cluster on the backend, whose jobs run what the hub's own cluster runs and report
    through the hub's proxy."""
    through_hub = {
        key: custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", CLUSTER)["spec"][key]
        for key in ("callbackURL", "python", "jupyterCommand")
    }
    match request.param:
        case "slurm-local":
            chosen = Backend(CLUSTER, slurm_job, "RUNNING", slurm_cancelled)
        case "slurm-ssh":
            request.getfixturevalue("login_node")
            key = operator_secret(
                "ssh-key", {"ssh-privatekey": (SSHD_DIR / "id_ed25519").read_bytes()}
            )
            cluster = make_cluster(connection=ssh_connection(key), **through_hub)
            chosen = Backend(cluster, slurm_job, "RUNNING", slurm_cancelled)
        case "slurm-rest":
            key = operator_secret("slurm-jwt", {"jwt_hs256.key": Path(JWT_KEY).read_bytes()})
            cluster = make_cluster(connection=rest_connection(key), **through_hub)
            chosen = Backend(cluster, slurm_job, "RUNNING", slurm_cancelled)
        case "sge":
            run(REPO / "dev/sge.sh", "install")
            run(REPO / "dev/sge.sh", "start")
            cluster = make_cluster(
                scheduler="sge",
                profiles=small(partition="all.q", account="research"),
                **through_hub,
            )
            chosen = Backend(cluster, sge_job, "r", sge_cancelled)
        case dialect:
            run(REPO / "dev/emulators.sh", "install", SPOOL)
            queue = {"partition": EMULATED_QUEUE[dialect]} if dialect in EMULATED_QUEUE else {}
            cluster = emulated_cluster(
                make_cluster, dialect, profiles=small(**queue), **through_hub
            )
            chosen = emulated_backend(cluster, dialect)
    yield chosen
    # A test that failed half-way leaves nothing running for the next backend, and the cluster
    # outlives the notebook so that its job is cancelled.
    hub.api("DELETE", "/users/alice/server")
    wait_for(
        lambda: (
            not [i for i in notebooks(custom, hub.namespace) if i["spec"]["hubUser"] == "alice"]
        ),
        120,
        "alice's notebooks to go",
    )


def test_start_reach_stop_through_the_hub(hub, custom, backend):
    start_server(hub, "alice", {"cluster": backend.cluster, "profile": "small"})
    notebook = job_of(custom, hub.namespace, "alice")
    status = notebook["status"]
    assert notebook["spec"]["clusterName"] == backend.cluster
    assert backend.job(status) == ("alice", backend.running)

    code, answer = through_proxy(hub, "/user/alice/api/status")
    assert code == 200 and "started" in answer
    # The real Jupyter server, started in alice's home by her job.
    code, contents = through_proxy(hub, "/user/alice/api/contents")
    assert code == 200 and contents["type"] == "directory"

    code, _ = hub.api("DELETE", "/users/alice/server")
    assert code in (202, 204)
    wait_for(lambda: hub.server("alice") is None, 120, "the server to stop")
    wait_for(lambda: backend.cancelled(status), 60, f"{backend.cluster} to end the job")
    wait_for(
        lambda: (
            not [
                i
                for i in notebooks(custom, hub.namespace)
                if i["metadata"]["uid"] == notebook["metadata"]["uid"]
            ]
        ),
        60,
        "the BatchNotebook to go",
    )


def test_named_servers_on_two_clusters_survive_a_hub_restart(hub, custom, make_cluster):
    """One user, two named servers at once: one on Slurm, one on Grid Engine. A hub restart
    keeps both running and reachable, with the same jobs."""
    run(REPO / "dev/sge.sh", "install")
    run(REPO / "dev/sge.sh", "start")
    through_hub = {
        key: custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", CLUSTER)["spec"][key]
        for key in ("callbackURL", "python", "jupyterCommand")
    }
    sge = make_cluster(
        scheduler="sge", profiles=small(partition="all.q", account="research"), **through_hub
    )
    start_server(hub, "bob", {"cluster": CLUSTER, "profile": "small"}, name="onslurm")
    start_server(hub, "bob", {"cluster": sge, "profile": "small"}, name="onsge")
    on_slurm = job_of(custom, hub.namespace, "bob", "onslurm")["status"]
    on_sge = job_of(custom, hub.namespace, "bob", "onsge")["status"]
    assert slurm_job(on_slurm) == ("bob", "RUNNING") and sge_job(on_sge) == ("bob", "r")

    hub.restart()
    for name, status in (("onslurm", on_slurm), ("onsge", on_sge)):
        wait_for(
            lambda n=name: answers_through_proxy(hub, f"/user/bob/{n}/api/status"),
            60,
            f"bob's {name} through the restarted hub",
        )
        assert job_of(custom, hub.namespace, "bob", name)["status"]["jobId"] == status["jobId"]
    assert slurm_job(on_slurm) == ("bob", "RUNNING") and sge_job(on_sge) == ("bob", "r")

    for name in ("onslurm", "onsge"):
        hub.api("DELETE", f"/users/bob/servers/{name}")
    wait_for(lambda: slurm_cancelled(on_slurm) and sge_cancelled(on_sge), 120, "both jobs to end")
    wait_for(
        lambda: not [i for i in notebooks(custom, hub.namespace) if i["spec"]["hubUser"] == "bob"],
        120,
        "bob's notebooks to go",
    )


def test_a_server_seen_while_its_job_ends_leaves_nothing_behind(hub, custom, make_cluster):
    """Found by the chaos campaign: a job cancelled outside the hub, which the hub's poll sees
    while it is still ending (PBS's exiting state, made to last here), was reported stopped;
    the hub then neither polls nor stops that server, and its BatchNotebook stayed forever."""
    run(REPO / "dev/emulators.sh", "install", SPOOL)
    settings = SPOOL / "pbspro" / "config.json"
    saved = settings.read_text() if settings.exists() else None
    settings.write_text(json.dumps({**json.loads(saved or "{}"), "exiting_seconds": 40}))
    try:
        through_hub = {
            key: custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", CLUSTER)["spec"][
                key
            ]
            for key in ("callbackURL", "python", "jupyterCommand")
        }
        cluster = emulated_cluster(
            make_cluster, "pbspro", profiles=small(partition="workq"), **through_hub
        )
        start_server(hub, "alice", {"cluster": cluster, "profile": "small"}, name="ending")
        notebook = job_of(custom, hub.namespace, "alice", "ending")
        job_id, uid = notebook["status"]["jobId"], notebook["metadata"]["uid"]
        env = {**os.environ, "BNB_EMULATOR_SPOOL": str(SPOOL)}
        run(REPO / "tests/emulators/pbspro/bin/qdel", job_id, env=env)  # as root: an admin
        wait_for(
            lambda: (emulator_record("pbspro", job_id) or {}).get("state") == "exiting",
            15,
            "the job to be ending",
        )
        wait_for(
            lambda: uid not in {i["metadata"]["uid"] for i in notebooks(custom, hub.namespace)},
            35,
            "the BatchNotebook of the server the hub saw stop to go, while its job still ends",
        )
        assert hub.server("alice", "ending") is None or not hub.server("alice", "ending")["ready"]
    finally:
        hub.api("DELETE", "/users/alice/servers/ending", {"remove": True})
        if saved is None:
            settings.unlink(missing_ok=True)
        else:
            settings.write_text(saved)
