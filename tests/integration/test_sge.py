"""The operator against the real API server and a real Grid Engine 8.1.9 (dev/sge.sh): qsub as
the user, one `qstat -xml` per poll, qacct for jobs the queue forgot, qdel on delete."""

from __future__ import annotations

import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import pytest

from batchnotebook_operator.schedulers.sge import GridEngine

from .conftest import GROUP, VERSION
from .stack import REPO, STATE, run, wait_for

pytestmark = [pytest.mark.cluster]

POLL = 2
QUEUE = "all.q"


@pytest.fixture(scope="module")
def sge() -> Iterator[None]:
    run(REPO / "dev/sge.sh", "install")
    run(REPO / "dev/sge.sh", "start")
    yield
    # A test that failed half-way must not leave the qmaster stopped for the next one.
    run(REPO / "dev/sge.sh", "start-master")


@pytest.fixture
def sge_cluster(sge, make_cluster):
    def make(**overrides) -> str:
        profile = {
            "name": "small",
            "displayName": "Small",
            "description": "1 slot, 512M, 1 hour",
            "defaults": {
                "cpus": 1,
                "memory": "512M",
                "walltime": "01:00:00",
                "partition": QUEUE,
                "account": "research",
            },
            "limits": {
                "maxCpus": 16,
                "maxMemory": "2G",
                "maxWalltime": "02:00:00",
                "partitions": [QUEUE],
                "accounts": ["research", "physics"],
            },
        }
        return make_cluster(
            **{"scheduler": "sge", "pollIntervalSeconds": POLL, "profiles": [profile], **overrides}
        )

    return make


def qstat_jobs(name: str) -> list[dict[str, str]]:
    """Grid Engine's own view of the jobs named `name`, read here without the backend's parser."""
    root = ElementTree.fromstring(run("qstat", "-xml", "-u", "*").stdout)
    return [
        {
            "id": job.findtext("JB_job_number", ""),
            "user": job.findtext("JB_owner", ""),
            "state": job.findtext("state", ""),
            "queue": job.findtext("queue_name", ""),
        }
        for job in root.iter("job_list")
        if job.findtext("JB_name") == name
    ]


def qacct(job_id: str) -> dict[str, str]:
    answer = run("qacct", "-j", job_id, check=False)
    fields = {}
    for line in answer.stdout.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    return fields


def free_slots() -> int:
    root = ElementTree.fromstring(run("qstat", "-g", "c", "-xml").stdout)
    return sum(int(q.findtext("available", "0")) for q in root.iter("cluster_queue_summary"))


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def cluster_reachable(custom, cluster: str) -> str | None:
    status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
        "status", {}
    )
    return conditions(status).get("SchedulerReachable")


def notebook_status(custom, namespace: str, name: str) -> dict:
    notebook = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "batchnotebooks", name
    )
    return notebook.get("status", {})


def test_lifecycle_submit_run_ready_delete(
    operator, sge_cluster, make_notebook, wait_phase, custom, namespace
):
    cluster = sge_cluster()
    nb = make_notebook(cluster, user="alice")
    name, tag = nb["metadata"]["name"], f"bnb-{nb['metadata']['uid']}"

    wait_phase(name, "Ready", timeout=90)
    jobs = qstat_jobs(tag)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["user"] == "alice" and job["state"] == "r" and job["queue"] == f"{QUEUE}@vm"
    # The job's report can make it Ready before a poll has seen it leave "t" (transferring) for
    # "r": the scheduler's word follows within a poll interval.
    status = wait_for(
        lambda: (s := notebook_status(custom, namespace, name))["schedulerState"] == "r" and s,
        30,
        "a poll to see the job running",
    )
    assert status["jobId"] == job["id"] and status["execHost"] == "vm"
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid ")
    assert conditions(status) == {
        "Submitted": "True",
        "Running": "True",
        "Ready": "True",
        "SchedulerReachable": "True",
    }

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(lambda: not qstat_jobs(tag), 60, "Grid Engine to forget the job")
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
            )["items"]
        ),
        60,
        "the resource to go",
    )
    # Grid Engine's accounting confirms a deletion: killed (SIGKILL) after the job started.
    record = wait_for(lambda: qacct(job["id"]).get("failed"), 30, "the accounting record")
    assert record.startswith("100") and qacct(job["id"])["exit_status"].startswith("137")


def test_waits_in_the_queue_while_the_slots_are_taken(
    operator, sge_cluster, make_notebook, wait_phase, notebook_status
):
    cluster = sge_cluster()
    filler = run(
        "sudo", "-n", "-u", "bob", "--", "qsub", "-terse", "-N", "filler", "-o", "/dev/null",
        "-j", "y", "-pe", "smp", str(free_slots()), "-b", "y", "sleep", "600",
    ).stdout.strip()  # fmt: skip
    try:
        wait_for(lambda: free_slots() == 0, 30, "the filler to take every slot")
        nb = make_notebook(cluster, user="bob")
        name = nb["metadata"]["name"]
        queued = wait_phase(name, "Queued", timeout=60)
        wait_for(lambda: notebook_status(name).get("schedulerState") == "qw", 30, "the state qw")
        time.sleep(3 * POLL)  # it keeps waiting: nothing ends a queued notebook
        status = notebook_status(name)
        assert status["phase"] == "Queued" and status["jobId"] == queued["jobId"]
        assert status["schedulerReason"] == "" and status["message"] == "queued: waiting"
        assert qstat_jobs(f"bnb-{nb['metadata']['uid']}")[0]["state"] == "qw"
    finally:
        run("qdel", filler)
    status = wait_phase(name, "Ready", timeout=90)
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for bob as uid ")


@pytest.mark.parametrize(
    "command, phase, exit_code",
    [(["/bin/sh", "-c", "sleep 3"], "Completed", 0), (["/bin/sh", "-c", "exit 3"], "Failed", 3)],
)
def test_jobs_that_end_by_themselves(
    operator, sge_cluster, make_notebook, wait_phase, command, phase, exit_code
):
    cluster = sge_cluster(jupyterCommand=command)
    name = make_notebook(cluster)["metadata"]["name"]
    status = wait_phase(name, phase, timeout=90)
    assert status["exitCode"] == exit_code
    assert f"exit_status {exit_code}" in status["message"]


def test_job_deleted_outside_is_seen_as_cancelled(operator, sge_cluster, make_notebook, wait_phase):
    cluster = sge_cluster()
    name = make_notebook(cluster, user="bob")["metadata"]["name"]
    status = wait_phase(name, "Ready", timeout=90)
    run("sudo", "-n", "-u", "bob", "--", "qdel", status["jobId"])
    ended = wait_phase(name, "Cancelled", timeout=30)
    assert ended["finishedAt"] and ended["exitCode"] == 137
    assert "failed 100 : assumedly after job" in ended["message"]


def test_refusal_shows_grid_engines_own_words(operator, sge_cluster, make_notebook, wait_phase):
    cluster = sge_cluster(
        profiles=[{"name": "small", "defaults": {"cpus": 1, "account": "nosuch"}}]
    )
    nb = make_notebook(cluster)
    status = wait_phase(nb["metadata"]["name"], "Failed", timeout=60)
    assert 'the requested project "nosuch" does not exist' in status["message"]
    assert qstat_jobs(f"bnb-{nb['metadata']['uid']}") == []


def test_qmaster_down_ends_no_notebook(
    operator, sge_cluster, make_notebook, wait_phase, notebook_status, custom
):
    cluster = sge_cluster()
    ready = make_notebook(cluster)["metadata"]["name"]
    before = wait_phase(ready, "Ready", timeout=90)

    run(REPO / "dev/sge.sh", "stop-master")
    try:
        wait_for(
            lambda: cluster_reachable(custom, cluster) == "False",
            30,
            "the cluster to be marked unreachable",
        )
        # Submitted while the qmaster is down: waits, is not failed.
        waiting = make_notebook(cluster)["metadata"]["name"]
        wait_for(
            lambda: "waiting for the scheduler" in notebook_status(waiting).get("message", ""),
            60,
            "the new notebook to wait for the scheduler",
        )
        time.sleep(5 * POLL)
        status = notebook_status(ready)
        assert status["phase"] == "Ready", status
        assert conditions(status)["SchedulerReachable"] == "False"
        assert "unable to send message to qmaster" in next(
            c["message"] for c in status["conditions"] if c["type"] == "SchedulerReachable"
        )
        assert notebook_status(waiting)["phase"] == "Pending"
    finally:
        run(REPO / "dev/sge.sh", "start-master")

    wait_for(
        lambda: conditions(notebook_status(ready)).get("SchedulerReachable") == "True",
        60,
        "the scheduler to be seen again",
    )
    after = notebook_status(ready)
    assert after["phase"] == "Ready"
    assert (after["jobId"], after["url"]) == (before["jobId"], before["url"])
    assert len(qstat_jobs(before["jobName"])) == 1
    wait_phase(waiting, "Ready", timeout=120)


def test_one_qstat_per_interval_for_every_notebook(
    operator, sge_cluster, make_notebook, wait_phase, notebook_status
):
    calls = STATE / "sge-calls.log"
    calls.unlink(missing_ok=True)
    counted = str(REPO / "tests/bin/count-calls")
    cluster = sge_cluster(
        commands={
            "query": [counted, "qstat", "-xml", "-u", "*"],
            "accounting": [counted, *GridEngine.commands["accounting"]],
        },
        connection={"environment": {"COUNT_LOG": str(calls)}},
        jupyterCommand=["sleep", "600"],  # no port to report: the jobs just run
    )
    names = [
        make_notebook(cluster, user=("alice", "bob")[i % 2])["metadata"]["name"] for i in range(6)
    ]
    for name in names:
        wait_phase(name, "Starting", timeout=90)

    start = time.time()
    time.sleep(5 * POLL)
    window = [
        line.split(" ", 1)[1]
        for line in calls.read_text().splitlines()
        if float(line.split(" ", 1)[0]) >= start
    ]
    # One qstat per interval whatever the number of notebooks, and no accounting while the
    # queue still lists every job.
    assert 1 <= len(window) <= 5 + 1, window
    assert set(window) == {"qstat -xml -u *"}, window
