"""Faults lose nothing: an operator killed mid-submit, a silent slurmctld (while notebooks run,
and while one is deleted), many notebooks."""

from __future__ import annotations

import pwd
import time

import pytest
from kubernetes.client.exceptions import ApiException

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION
from batchnotebook_operator.schedulers.slurm import QUERY_FIELDS
from devstack.controlplane import ControlPlane

from .conftest import OPERATOR_NAMESPACE
from .stack import API_PORT, REPO, STATE, run, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


def test_operator_killed_between_submit_and_status_write(
    operator, make_cluster, make_notebook, wait_phase, notebook_status
):
    flag = STATE / "crash-after-submit"
    flag.touch()
    cluster = make_cluster(
        connection={
            "runAsCommand": [str(REPO / "tests/bin/run-as-then-crash"), "{user}"],
            "environment": {"CRASH_FLAG": str(flag)},
        }
    )
    nb = make_notebook(cluster)
    name, tag = nb["metadata"]["name"], f"bnb-{nb['metadata']['uid']}"

    wait_for(lambda: not operator.alive, 60, "the operator to be killed by the submit wrapper")
    assert not flag.exists()
    jobs = squeue(tag)
    assert len(jobs) == 1, "the scheduler accepted the job"
    before = notebook_status(name)
    assert "jobId" not in before, "the operator died before writing the job id"
    assert before["submitAttemptedAt"], "written before the submit: the restart looks first"

    operator.start()
    status = wait_phase(name, "Ready")
    assert status["jobId"] == jobs[0]["id"]
    assert len(squeue(tag)) == 1, "still exactly one job"


def test_slurmctld_down_for_30_seconds(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, custom
):
    cluster = make_cluster()
    names = [make_notebook(cluster)["metadata"]["name"] for _ in range(2)]
    before = {n: wait_phase(n, "Ready") for n in names}

    run(REPO / "dev/slurm.sh", "stop-ctld")
    try:

        def cluster_unreachable():
            status = custom.get_cluster_custom_object(
                "batchnotebook.dev", "v1alpha1", "batchclusters", cluster
            ).get("status", {})
            return any(
                c["type"] == "SchedulerReachable" and c["status"] == "False"
                for c in status.get("conditions", [])
            )

        wait_for(cluster_unreachable, 60, "the cluster to be marked unreachable")
        time.sleep(30)
        for name in names:
            status = notebook_status(name)
            assert status["phase"] == "Ready", status
            reach = {c["type"]: c["status"] for c in status["conditions"]}
            assert reach["SchedulerReachable"] == "False"
    finally:
        run(REPO / "dev/slurm.sh", "start-ctld")

    for name in names:
        wait_for(
            lambda n=name: (
                {c["type"]: c["status"] for c in notebook_status(n)["conditions"]}[
                    "SchedulerReachable"
                ]
                == "True"
            ),
            90,
            f"{name} to see the scheduler again",
        )
        after = notebook_status(name)
        assert after["phase"] == "Ready" and after["jobId"] == before[name]["jobId"]
        assert after["url"] == before[name]["url"]


def test_fifty_notebooks_one_query_per_interval(
    operator, make_cluster, make_notebook, wait_phase, notebook_status
):
    calls = STATE / "squeue-calls.log"
    calls.unlink(missing_ok=True)
    interval = 2
    cluster = make_cluster(
        pollIntervalSeconds=interval,
        commands={
            "query": [
                str(REPO / "tests/bin/count-calls"),
                "squeue",
                "--noheader",
                "--all",
                "--states=all",
                "--name={{ tags|join(',') }}",
                f"--format={QUERY_FIELDS}",
            ]
        },
        connection={"environment": {"COUNT_LOG": str(calls)}},
        jupyterCommand=["sleep", "600"],  # no port to report: the jobs just run or queue
    )
    names = [
        make_notebook(cluster, user=("alice", "bob")[i % 2])["metadata"]["name"] for i in range(50)
    ]
    for name in names:
        wait_phase(name, "Queued", "Starting", timeout=120)
    wait_for(
        lambda: all(notebook_status(n).get("schedulerState") for n in names),
        60,
        "every notebook to have a scheduler state",
    )

    start = time.time()
    time.sleep(5 * interval)
    lines = [line.split(" ", 1) for line in calls.read_text().splitlines()]
    window = [args for stamp, args in lines if float(stamp) >= start]
    # At most one squeue per interval however many notebooks (at least one: it does poll);
    # each names all 50 jobs.
    assert 1 <= len(window) <= 5 * 1 + 1, window
    for args in window:
        asked = args.split("--name=")[1].split()[0].split(",")
        assert len(asked) == 50
    for name in names:
        run("scancel", notebook_status(name)["jobId"])


def test_api_server_restart_loses_nothing(
    operator, kubeconfig, make_cluster, make_notebook, wait_phase, notebook_status
):
    cluster = make_cluster()
    name = make_notebook(cluster)["metadata"]["name"]
    before = wait_phase(name, "Ready")

    plane = ControlPlane(STATE, API_PORT)
    plane.stop()
    time.sleep(5)  # the operator meanwhile polls Slurm and cannot write: nothing may break
    plane.start()

    assert operator.alive
    wait_for(operator.healthy, 60, "the operator to be healthy again")
    after = wait_phase(name, "Ready")
    assert (after["jobId"], after["url"]) == (before["jobId"], before["url"])
    assert len(squeue(before["jobName"])) == 1
    # And it still acts: a new notebook is submitted and becomes ready.
    wait_phase(make_notebook(cluster)["metadata"]["name"], "Ready", timeout=90)


def test_a_notebook_deleted_while_slurmctld_is_down_leaves_its_job_in_the_backlog(
    operator, make_cluster, make_notebook, wait_phase, custom, core, namespace
):
    """The notebook goes at once, its job waits in the cluster's status.pendingCancels for as
    long as slurmctld is down, and is cancelled (as its owner, by its id) once it is back."""
    cluster = make_cluster(pollIntervalSeconds=2)

    def cluster_status() -> dict:
        body = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)
        return body.get("status", {})

    def pending() -> list[dict]:
        return cluster_status().get("pendingCancels") or []

    # Polled: the operator knows the cluster (after the API server's restart above, its watch
    # may take a while to see a new one, and a notebook of a cluster it does not know fails).
    wait_for(lambda: cluster_status().get("lastPollTime"), 60, "the operator to poll the cluster")
    name = make_notebook(cluster)["metadata"]["name"]
    job_id = wait_phase(name, "Ready")["jobId"]

    def notebook_gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name)
        except ApiException as error:
            return error.status == 404
        return False

    run(REPO / "dev/slurm.sh", "stop-ctld")
    try:
        started = time.monotonic()
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name)
        wait_for(notebook_gone, 120, "the notebook to go while slurmctld is down")
        print(f"notebook gone {time.monotonic() - started:.1f} s after its deletion")
        [entry] = pending()
        assert (entry["jobId"], entry["unixUser"]) == (job_id, "alice")
        assert entry["notebook"] == f"{namespace}/{name}"
        time.sleep(3 * 2)  # rounds that get no answer drop nothing
        assert [e["jobId"] for e in pending()] == [job_id]
    finally:
        run(REPO / "dev/slurm.sh", "start-ctld")

    back = time.monotonic()
    wait_for(lambda: not pending(), 90, "the backlog to be worked off")
    print(f"backlog empty {time.monotonic() - back:.1f} s after slurmctld was back")
    live = [j for j in squeue(entry["jobName"]) if j["state"] in ("PENDING", "RUNNING")]
    assert not live, live
    alice = str(pwd.getpwnam("alice").pw_uid)
    wait_for(
        lambda: (
            run("sacct", "-j", job_id, "-X", "-n", "--format=State%40").stdout.split()
            == ["CANCELLED", "by", alice]
        ),
        30,
        f"accounting to say alice ({alice}) cancelled job {job_id}",
    )
    events = {
        e.reason: e.message
        for e in core.list_namespaced_event(
            OPERATOR_NAMESPACE, field_selector=f"involvedObject.name={cluster}"
        ).items
    }
    assert "waits to be cancelled" in events["CancelPending"]
    assert events["CancelConfirmed"].startswith(f"job {job_id} of {namespace}/{name} (alice)")
