"""Two operator replicas behind one Lease: the active one, killed with SIGKILL between a job's
submission and the write of its id while other notebooks run, loses nothing, and the standby
takes over (the time it took is printed). As a Deployment would, the killed replica comes back,
as a standby on its old port, the one the jobs report to: it forwards their reports to the new
leader."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client

from batchnotebook_operator.lease import URL_ANNOTATION
from devstack.host import OperatorProcess

from .conftest import OPERATOR_NAMESPACE
from .stack import OPERATOR_PORT, REPO, STATE, delete_notebook, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15, 10, 2
# The jobs report to OPERATOR_PORT (the clusters' callbackURL); the second replica listens here.
SECOND_PORT = OPERATOR_PORT + 40
ENDED = {"CANCELLED", "COMPLETED", "FAILED", "TIMEOUT"}


def replica(kubeconfig, name: str, port: int, lease: str) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig,
        port,
        STATE / "logs",
        name=name,
        args=["--verbose", "--liveness", f"http://127.0.0.1:{port + 2}/healthz"],
        env={
            "BATCHNOTEBOOK_LISTEN": f"0.0.0.0:{port}",
            "BATCHNOTEBOOK_LEASE": lease,
            "BATCHNOTEBOOK_NAMESPACE": OPERATOR_NAMESPACE,
            "BATCHNOTEBOOK_PEER_URL": f"http://127.0.0.1:{port}",
            "BATCHNOTEBOOK_LEASE_DURATION": str(LEASE_DURATION),
            "BATCHNOTEBOOK_LEASE_RENEW_DEADLINE": str(RENEW_DEADLINE),
            "BATCHNOTEBOOK_LEASE_RETRY_PERIOD": str(RETRY_PERIOD),
        },
    )


@pytest.fixture
def replicas(operator, kubeconfig, api):
    """(first, second, the Lease's name): the first leads, the second stands by; the suite's
    standalone operator is stopped meanwhile (it would act next to them)."""
    operator.stop()
    lease = f"itest-{uuid.uuid4().hex[:6]}"
    first = replica(kubeconfig, "replica-a", OPERATOR_PORT, lease)
    second = replica(kubeconfig, "replica-b", SECOND_PORT, lease)
    leases = client.CoordinationV1Api(api)
    try:
        first.start()
        wait_for(lambda: leader_url(leases, lease) == url(first), 30, "the first to lead")
        second.start()
        yield first, second, lease
    finally:
        for one in (first, second):
            one.stop()
        try:
            leases.delete_namespaced_lease(lease, OPERATOR_NAMESPACE)
        except client.ApiException as error:
            if error.status != 404:
                raise
        operator.start()


def url(one: OperatorProcess) -> str:
    return f"http://127.0.0.1:{one.port}"


def holder(leases: client.CoordinationV1Api, lease: str) -> tuple[str, str]:
    """(identity, URL) of the Lease's holder (empty when none holds it)."""
    try:
        found = leases.read_namespaced_lease(lease, OPERATOR_NAMESPACE)
    except client.ApiException as error:
        if error.status == 404:
            return "", ""
        raise
    if not found.spec.holder_identity:
        return "", ""
    annotations = found.metadata.annotations or {}
    return found.spec.holder_identity, annotations.get(URL_ANNOTATION, "")


def leader_url(leases: client.CoordinationV1Api, lease: str) -> str:
    return holder(leases, lease)[1]


def test_the_active_replica_killed_mid_submit(
    replicas, api, namespace, make_cluster, make_notebook, wait_phase, notebook_status, custom, core
):
    first, second, lease = replicas
    leases = client.CoordinationV1Api(api)
    flag = STATE / "crash-after-submit-replicas"
    flag.unlink(missing_ok=True)
    cluster = make_cluster(
        connection={
            "runAsCommand": [str(REPO / "tests/bin/run-as-then-crash"), "{user}"],
            "environment": {"CRASH_FLAG": str(flag)},
        }
    )
    running = [make_notebook(cluster)["metadata"]["name"] for _ in range(3)]
    before = {name: wait_phase(name, "Ready") for name in running}

    # The submit wrapper kills the active replica with SIGKILL once the scheduler has taken the
    # job, before the replica could write its id (test_faults.py does it to a lone operator).
    killed = holder(leases, lease)[0]
    flag.touch()
    submitting = make_notebook(cluster)["metadata"]["name"]
    wait_for(lambda: not first.alive, 60, "the active replica to be killed mid-submit", 0.05)
    killed_at = time.monotonic()
    assert not flag.exists()
    assert "jobId" not in notebook_status(submitting), "killed before writing the job id"
    late = make_notebook(cluster)["metadata"]["name"]  # created while no replica acts
    first.start()  # the Deployment's restart: a standby now, on the port the jobs report to

    # The second, which has watched the Lease longest, or (unlikely) the restarted first. The
    # notebooks' reports reach it only through the first's forwarding.
    wait_for(lambda: holder(leases, lease)[0] not in ("", killed), 60, "a new leader", 0.2)
    took_over = time.monotonic() - killed_at
    print(f"\nthe new leader: {leader_url(leases, lease)}")
    wait_for(lambda: notebook_status(submitting).get("jobId"), 60, "the job id recorded", 0.2)
    recorded = time.monotonic() - killed_at
    print(
        f"\nfailover: the standby led {took_over:.1f} s after the SIGKILL, and had recorded the "
        f"job it found for the notebook being submitted {recorded:.1f} s after it (lease "
        f"{LEASE_DURATION} s, renew deadline {RENEW_DEADLINE} s, retry {RETRY_PERIOD} s)"
    )
    assert took_over < LEASE_DURATION + 4 * RETRY_PERIOD + 15  # generous: kopf's start too

    names = [*running, submitting, late]
    after = {name: wait_phase(name, "Ready", timeout=120) for name in names}
    for name in names:
        jobs = squeue(after[name]["jobName"])
        assert len(jobs) == 1, f"{name}: exactly one job, not {jobs}"
        assert jobs[0]["id"] == after[name]["jobId"]
    for name in running:
        assert after[name]["jobId"] == before[name]["jobId"], "the running kept their jobs"

    # Deleting still cancels, through the new leader.
    gone = running[0]
    delete_notebook(core, custom, namespace, gone)
    wait_for(
        lambda: all(job["state"] in ENDED for job in squeue(after[gone]["jobName"])),
        60,
        "the job to be cancelled",
    )

    # A leader stopped as Kubernetes stops a pod (SIGTERM) hands the Lease over at once.
    by_url = {url(one): one for one in (first, second)}
    leader = by_url[leader_url(leases, lease)]
    stopped = holder(leases, lease)[0]
    started = time.monotonic()
    leader.stop()
    stopping = time.monotonic() - started
    wait_for(lambda: holder(leases, lease)[0] not in ("", stopped), 30, "the handover", 0.2)
    handover = time.monotonic() - started
    print(f"handover on SIGTERM: {handover:.1f} s, of which the leader's stop {stopping:.1f} s")
    assert handover - stopping < LEASE_DURATION, "the released Lease was not waited out"
    leader.start()  # a standby again, for the rest of the module
    late_status = wait_phase(late, "Ready")
    assert late_status["jobId"] == after[late]["jobId"]
