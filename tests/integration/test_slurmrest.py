"""The operator on the real Slurm through the real slurmrestd (127.0.0.1:6820, auth/jwt), with
per-user tokens signed with the cluster's key, kept in a Secret of the operator's namespace."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import time
import urllib.request

import pytest

from batchnotebook_operator.clients.slurmrest.client import SlurmRestClient
from batchnotebook_operator.errors import SchedulerUnavailable

from .conftest import GROUP, OPERATOR_NAMESPACE, VERSION
from .stack import JOB_PYTHON, run, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

SLURMRESTD = "http://127.0.0.1:6820"
JWT_KEY = "/var/spool/slurm/jwt_hs256.key"


@pytest.fixture
def key_secret(operator_secret):
    """Makes Secrets holding a JWT key (the cluster's own by default) as the admin would:
    `kubectl create secret generic NAME --from-file=jwt_hs256.key=/var/spool/slurm/...`."""

    def make(key: bytes | None = None) -> str:
        with open(JWT_KEY, "rb") as cluster_key:
            value = key if key is not None else cluster_key.read()
        return operator_secret("slurm-jwt", {"jwt_hs256.key": value})

    return make


def rest_connection(secret: str, url: str = SLURMRESTD) -> dict:
    return {
        "type": "slurmrest",
        "slurmrest": {
            "url": url,
            "jwtKeySecret": {"name": secret},
            "homeDirectory": "/home/{user}",
            # queryUser: the default, unprivileged (dev/sshd.sh creates it), not SlurmUser
        },
    }


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_condition(custom, cluster: str) -> dict:
    status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
        "status", {}
    )
    return next((c for c in status.get("conditions", []) if c["type"] == "SchedulerReachable"), {})


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def test_lifecycle_over_slurmrest(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace, key_secret
):
    cluster = make_cluster(connection=rest_connection(key_secret()))
    nb = make_notebook(cluster, user="alice")
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]

    status = wait_phase(name, "Ready")
    jobs = squeue(f"bnb-{uid}")
    assert len(jobs) == 1 and jobs[0]["user"] == "alice" and jobs[0]["state"] == "RUNNING"
    assert status["jobId"] == jobs[0]["id"] and status["execHost"] == jobs[0]["host"]
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid ")
    assert conditions(status)["SchedulerReachable"] == "True"
    assert cluster_condition(custom, cluster)["status"] == "True"
    cluster_status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)[
        "status"
    ]
    # Slurm 22.05 offers v0.0.36 to v0.0.38: v0.0.38 is the newest both sides speak.
    assert cluster_status["schedulerVersion"] == "22.05.8"
    assert cluster_status["apiVersion"] == "v0.0.38 (newest both speak)"
    # The job started in alice's home, where its output is.
    assert run("stat", "-c", "%U", f"/home/alice/batchnotebook-{status['jobId']}.log").stdout == (
        "alice\n"
    )

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: [j["state"] for j in squeue(f"bnb-{uid}")] == ["CANCELLED"],
        60,
        "slurmrestd to cancel the job",
    )
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
            )["items"]
        ),
        60,
        "the resource to go",
    )


@pytest.mark.parametrize("exit_code, phase", [(0, "Completed"), (3, "Failed")])
def test_finished_and_failed_jobs(
    operator, make_cluster, make_notebook, wait_phase, key_secret, exit_code, phase
):
    cluster = make_cluster(
        connection=rest_connection(key_secret()),
        jupyterCommand=[JOB_PYTHON, "-c", f"import sys; sys.exit({exit_code})"],
    )
    status = wait_phase(make_notebook(cluster)["metadata"]["name"], phase, timeout=90)
    assert status["exitCode"] == exit_code


def test_refused_submission_shows_slurms_words(
    operator, make_cluster, make_notebook, wait_phase, key_secret
):
    cluster = make_cluster(
        connection=rest_connection(key_secret()),
        profiles=[{"name": "small", "defaults": {"cpus": 1, "account": "nosuch"}}],
    )
    nb = make_notebook(cluster)
    status = wait_phase(nb["metadata"]["name"], "Failed")
    assert "Invalid account or account/partition combination specified" in status["message"]
    assert squeue(f"bnb-{nb['metadata']['uid']}") == []


def test_job_cancelled_outside_is_seen(
    operator, make_cluster, make_notebook, wait_phase, key_secret
):
    cluster = make_cluster(connection=rest_connection(key_secret()))
    name = make_notebook(cluster)["metadata"]["name"]
    status = wait_phase(name, "Ready", "Starting")
    run("scancel", status["jobId"])
    assert wait_phase(name, "Cancelled", timeout=20)["finishedAt"]


class SecretReader:
    """What the operator's Kube does for the key, through the tests' synchronous client."""

    def __init__(self, core) -> None:
        self.core = core

    async def secret_bytes(self, namespace: str, name: str) -> dict[str, bytes]:
        data = self.core.read_namespaced_secret(name, namespace).data or {}
        return {k: base64.b64decode(v) for k, v in data.items()}


def test_a_users_token_cannot_cancel_another_users_job(
    operator, make_cluster, make_notebook, wait_phase, custom, core, key_secret
):
    secret = key_secret()
    cluster = make_cluster(connection=rest_connection(secret))
    bob = make_notebook(cluster, user="bob")
    status = wait_phase(bob["metadata"]["name"], "Ready")
    spec = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)["spec"]

    async def as_alice() -> tuple[str, str]:
        client = SlurmRestClient("itest-alice", spec, SecretReader(core))
        try:
            version = await client.version()
            await client.cancel([status["jobId"]], "alice")
        except SchedulerUnavailable as error:
            return version, str(error)
        finally:
            await client.close()
        return version, "cancelled"

    version, refusal = asyncio.run(as_alice())
    assert version == "22.05.8"
    assert "Access/permission denied" in refusal and "as alice" in refusal
    time.sleep(3)
    (job,) = squeue(f"bnb-{bob['metadata']['uid']}")
    assert job["state"] == "RUNNING" and job["user"] == "bob"
    assert wait_phase(bob["metadata"]["name"], "Ready")["jobId"] == status["jobId"]


def test_a_wrong_key_fails_nothing_and_a_fixed_key_goes_on(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, custom, core, key_secret
):
    secret = key_secret(secrets.token_bytes(32))
    cluster = make_cluster(connection=rest_connection(secret))
    nb = make_notebook(cluster)
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]

    wait_for(
        lambda: cluster_condition(custom, cluster).get("status") == "False",
        60,
        "the cluster to be unreachable",
    )
    assert "wrong key" in cluster_condition(custom, cluster)["message"]
    wait_for(
        lambda: conditions(notebook_status(name)).get("SchedulerReachable") == "False",
        60,
        "the notebook to wait for the scheduler",
    )
    time.sleep(6)  # three poll intervals: still waiting, nothing failed, nothing submitted
    status = notebook_status(name)
    assert status["phase"] == "Pending" and "waiting for the scheduler" in status["message"]
    assert squeue(f"bnb-{uid}") == []

    with open(JWT_KEY, "rb") as cluster_key:
        right = base64.b64encode(cluster_key.read()).decode()
    core.patch_namespaced_secret(secret, OPERATOR_NAMESPACE, {"data": {"jwt_hs256.key": right}})
    status = wait_phase(name, "Ready", timeout=90)  # the key is read again after a refusal
    assert conditions(status)["SchedulerReachable"] == "True"
    wait_for(
        lambda: cluster_condition(custom, cluster).get("status") == "True",
        30,
        "the cluster to be reachable",
    )


def test_an_unknown_key_secret_is_unreachable(operator, make_cluster, custom):
    cluster = make_cluster(connection=rest_connection("no-such-secret"))
    wait_for(
        lambda: cluster_condition(custom, cluster).get("status") == "False",
        60,
        "the cluster to be unreachable",
    )
    message = cluster_condition(custom, cluster)["message"]
    assert "cannot read the JWT key from Secret default/no-such-secret" in message


def test_slurmrestd_unreachable_never_ends_a_notebook(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, custom, key_secret
):
    secret = key_secret()
    cluster = make_cluster(connection=rest_connection(secret))
    running = make_notebook(cluster)["metadata"]["name"]
    before = wait_phase(running, "Ready")

    # slurmrestd is shared and stays up: the cluster is pointed at a port nobody listens on.
    custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "batchclusters",
        cluster,
        {"spec": {"connection": rest_connection(secret, f"http://127.0.0.1:{closed_port()}")}},
    )
    wait_for(
        lambda: cluster_condition(custom, cluster).get("status") == "False",
        60,
        "the cluster to be unreachable",
    )
    assert "did not answer" in cluster_condition(custom, cluster)["message"]
    waiting = make_notebook(cluster)["metadata"]["name"]
    wait_for(
        lambda: conditions(notebook_status(running)).get("SchedulerReachable") == "False",
        30,
        "the running notebook to see no answer",
    )
    time.sleep(10)
    status = notebook_status(running)
    assert status["phase"] == "Ready" and status["jobId"] == before["jobId"]
    assert notebook_status(waiting)["phase"] == "Pending"

    custom.patch_cluster_custom_object(
        GROUP, VERSION, "batchclusters", cluster, {"spec": {"connection": rest_connection(secret)}}
    )
    wait_for(
        lambda: conditions(notebook_status(running)).get("SchedulerReachable") == "True",
        60,
        "the running notebook to see slurmrestd again",
    )
    after = notebook_status(running)
    assert after["phase"] == "Ready" and after["url"] == before["url"]
    assert wait_phase(waiting, "Ready", timeout=90)["jobId"]
