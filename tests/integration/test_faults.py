"""Faults lose nothing: an operator killed mid-submit, a silent slurmctld, many notebooks."""

from __future__ import annotations

import time

import pytest

from batchnotebook_operator.schedulers.slurm import QUERY_FIELDS
from devstack.controlplane import ControlPlane

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
