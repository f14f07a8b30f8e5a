"""The operator on PBS Pro, Torque and Moab, through their dialect emulators (tests/emulators):
submit as the user, a full queue, Ready on the right host, cancel on delete, jobs that end by
themselves or are cancelled outside, a refused submission, and a server that is down."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.schedulers import BACKENDS

from .conftest import GROUP, VERSION
from .emulated import EMULATORS, SPOOL, cluster_unreachable, emulated_cluster
from .stack import JOB_PYTHON, REPO, run, wait_for

pytestmark = [pytest.mark.cluster]

DIALECTS = ["pbspro", "torque", "moab"]
# Each test stack has its own spool, so two suites never share queues or fault switches.
HOST = os.uname().nodename.split(".")[0]
#: what each scheduler says about a job that waits for a free slot
WAIT_REASON = {
    "pbspro": "Not Running: Server job limit has been reached.",
    "torque": "Not Running: Server job limit has been reached.",
    "moab": "eligible",
}
REFUSAL = {
    "pbspro": "qsub: Unknown queue",
    "torque": "qsub: submit error (Unknown queue MSG=requested queue not found)",
    "moab": "ERROR:    cannot submit job - cannot locate requested class 'nosuch'",
}
#: what each scheduler's client says when its server is down
DOWN = {
    "pbspro": "qstat: cannot connect to server",
    "torque": "Cannot connect to default server host",
    "moab": "ERROR:    connection refused - no service listening at",
}
POLL_SECONDS = 2


@pytest.fixture(scope="module", autouse=True)
def spool():
    run(REPO / "dev/emulators.sh", "install", SPOOL)
    yield
    # Whatever a failed test left running goes, as root would clean up a queue.
    for dialect in DIALECTS:
        for record in (SPOOL / dialect / "jobs").glob("*.json"):
            job = json.loads(record.read_text())
            if job["state"] in ("queued", "running"):
                run(*scheduler_command(dialect, "cancel", job_ids=[job["job_id"]]), check=False)


@pytest.fixture(params=DIALECTS)
def dialect(request):
    settings = SPOOL / request.param / "config.json"
    settings.write_text(json.dumps({"max_running": 16, "kill_delay_seconds": 2}))
    yield request.param
    settings.unlink(missing_ok=True)
    (SPOOL / request.param / "server-down").unlink(missing_ok=True)


def scheduler_command(dialect: str, command: str, **context) -> list[str]:
    argv = BACKENDS[dialect]().argv(command, **{"tags": [], "job_ids": [], **context})
    return [
        "/usr/bin/env",
        f"BNB_EMULATOR_SPOOL={SPOOL}",
        str(EMULATORS / dialect / "bin" / argv[0]),
        *argv[1:],
    ]


def scheduler_says(dialect: str, tag: str) -> JobStatus | None:
    """The job named `tag`, as the scheduler's own query (or its memory of ended jobs) shows it."""
    backend = BACKENDS[dialect]()
    for command, parse in (
        ("query", backend.parse_query),
        ("accounting", backend.parse_accounting),
    ):
        answer = run(*scheduler_command(dialect, command), check=False)
        jobs = [job for job in parse(answer.stdout) if job.name == tag]
        if jobs:
            return jobs[-1]
    return None


def set_config(dialect: str, **settings) -> None:
    path = SPOOL / dialect / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))


def delete_notebook(custom, namespace: str, name: str) -> None:
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
            )["items"]
        ),
        90,
        f"{name} to be deleted",
    )


def tag_of(notebook: dict) -> str:
    return f"bnb-{notebook['metadata']['uid']}"


def wait_cancelled(dialect: str, notebook: dict) -> None:
    """The scheduler itself reports the job cancelled (the operator lets go of a deleted notebook
    once the job is ending; the scheduler takes a moment more to call it ended)."""
    wait_for(
        lambda: (
            (job := scheduler_says(dialect, tag_of(notebook))) and job.state is JobState.CANCELLED
        ),
        30,
        f"the scheduler to report {tag_of(notebook)} cancelled",
    )


def test_full_queue_waits_then_runs_and_delete_cancels(
    dialect, operator, make_cluster, make_notebook, wait_phase, notebook_status, custom, namespace
):
    set_config(dialect, max_running=1)
    cluster = emulated_cluster(make_cluster, dialect)
    first = make_notebook(cluster, user="alice")
    status = wait_phase(first["metadata"]["name"], "Ready", timeout=90)
    assert status["execHost"] == HOST
    job = scheduler_says(dialect, tag_of(first))
    assert job and job.state is JobState.RUNNING and job.user == "alice"
    assert status["jobId"] == job.job_id
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid 1001")

    second = make_notebook(cluster, user="bob")
    queued = wait_for(
        lambda: (
            (s := notebook_status(second["metadata"]["name"])).get("phase") == "Queued"
            and s.get("schedulerReason")
            and s
        ),
        60,
        "the job to wait with the scheduler's reason",
    )
    assert queued["schedulerReason"] == WAIT_REASON[dialect]
    if dialect != "torque":  # Torque's FIFO scheduler offers no estimate
        assert queued["expectedStartTime"]

    delete_notebook(custom, namespace, first["metadata"]["name"])
    wait_cancelled(dialect, first)

    status = wait_phase(second["metadata"]["name"], "Ready", timeout=90)
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for bob as uid 1002")
    delete_notebook(custom, namespace, second["metadata"]["name"])
    wait_cancelled(dialect, second)


def test_job_cancelled_outside_is_seen(dialect, operator, make_cluster, make_notebook, wait_phase):
    cluster = emulated_cluster(make_cluster, dialect)
    notebook = make_notebook(cluster)
    status = wait_phase(notebook["metadata"]["name"], "Ready", timeout=90)
    run(*scheduler_command(dialect, "cancel", job_ids=[status["jobId"]]))  # root, as an admin
    ended = wait_phase(notebook["metadata"]["name"], "Cancelled", timeout=30)
    assert ended["finishedAt"]


@pytest.mark.parametrize("code, phase", [(0, "Completed"), (3, "Failed")])
def test_jobs_that_end_by_themselves(
    dialect, code, phase, operator, make_cluster, make_notebook, wait_phase
):
    cluster = emulated_cluster(
        make_cluster, dialect, jupyterCommand=[JOB_PYTHON, "-c", f"raise SystemExit({code})"]
    )
    notebook = make_notebook(cluster)
    ended = wait_phase(notebook["metadata"]["name"], phase, timeout=60)
    assert ended["exitCode"] == code


def test_refused_submission_shows_the_schedulers_words(
    dialect, operator, make_cluster, make_notebook, wait_phase
):
    cluster = emulated_cluster(
        make_cluster,
        dialect,
        profiles=[
            {
                "name": "small",
                "defaults": {"cpus": 1, "partition": "nosuch"},
            }
        ],
    )
    notebook = make_notebook(cluster)
    status = wait_phase(notebook["metadata"]["name"], "Failed", timeout=60)
    assert REFUSAL[dialect] in status["message"]


def scheduler_reachable(status: dict) -> str:
    return {c["type"]: c["status"] for c in status["conditions"]}["SchedulerReachable"]


def test_server_that_does_not_answer_never_ends_a_notebook(
    dialect, operator, make_cluster, make_notebook, wait_phase, notebook_status, custom
):
    cluster = emulated_cluster(make_cluster, dialect, timeout=3)
    notebook = make_notebook(cluster)
    name = notebook["metadata"]["name"]
    before = wait_phase(name, "Ready", timeout=90)

    stall = SPOOL / dialect / "server-stall"
    stall.touch()
    try:
        message = wait_for(lambda: cluster_unreachable(custom, cluster), 30, "a timed-out query")
        assert "did not answer within 3 s" in message
        time.sleep(3 * POLL_SECONDS)
        status = notebook_status(name)
        assert status["phase"] == "Ready" and status["url"] == before["url"]
        assert scheduler_reachable(status) == "False"
    finally:
        stall.unlink(missing_ok=True)
    wait_for(lambda: scheduler_reachable(notebook_status(name)) == "True", 60, "answers again")
    assert notebook_status(name)["phase"] == "Ready"


def test_server_down_never_ends_a_notebook(
    dialect, operator, make_cluster, make_notebook, wait_phase, notebook_status, custom
):
    cluster = emulated_cluster(make_cluster, dialect)
    running = make_notebook(cluster)
    before = wait_phase(running["metadata"]["name"], "Ready", timeout=90)

    down = SPOOL / dialect / "server-down"
    down.touch()
    try:
        message = wait_for(lambda: cluster_unreachable(custom, cluster), 30, "a refused query")
        assert DOWN[dialect] in message
        waiting = make_notebook(cluster)  # cannot be submitted now
        time.sleep(5 * POLL_SECONDS)
        status = notebook_status(running["metadata"]["name"])
        assert status["phase"] == "Ready" and status["url"] == before["url"]
        assert scheduler_reachable(status) == "False"
        assert notebook_status(waiting["metadata"]["name"]).get("phase", "Pending") == "Pending"
    finally:
        down.unlink(missing_ok=True)

    wait_phase(waiting["metadata"]["name"], "Ready", timeout=120)
    wait_for(
        lambda: scheduler_reachable(notebook_status(running["metadata"]["name"])) == "True",
        60,
        "the scheduler to be seen again",
    )
    assert notebook_status(running["metadata"]["name"])["phase"] == "Ready"
