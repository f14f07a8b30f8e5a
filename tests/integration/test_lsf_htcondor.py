"""The operator on LSF and HTCondor, through their dialect emulators (tests/emulators/): the real
submit path as the user, one batched query per poll, cancel on delete, ended states, refusals in
the scheduler's own words, and a scheduler that does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import GROUP, VERSION
from .emulated import EMULATORS, SPOOL, cluster_unreachable, emulated_cluster
from .stack import JOB_PYTHON, REPO, run, wait_for

pytestmark = [pytest.mark.cluster]

HOST = socket.gethostname().split(".")[0]
#: Per dialect: the queue the default test profile asks for must exist (LSF), and the accounting
#: groups the site accepts (HTCondor's submit requirement).
SETTINGS = {
    "lsf": {"queues": ["normal", "debug", "batch"], "default_queue": "normal"},
    "htcondor": {"accounting_groups": ["research", "physics"]},
}


@pytest.fixture(scope="module", autouse=True)
def emulators():
    run(REPO / "dev" / "emulators.sh", "install", SPOOL)
    for dialect, settings in SETTINGS.items():
        (SPOOL / dialect / "config.json").write_text(json.dumps(settings))
    yield
    for dialect in SETTINGS:
        (SPOOL / dialect / "server-down").unlink(missing_ok=True)


@pytest.fixture(params=["lsf", "htcondor"])
def dialect(request):
    return request.param


@pytest.fixture
def settings(dialect):
    """Change the dialect's emulator settings for one test."""
    path = SPOOL / dialect / "config.json"

    def change(**values):
        path.write_text(json.dumps({**SETTINGS[dialect], **values}))

    yield change
    path.write_text(json.dumps(SETTINGS[dialect]))
    (SPOOL / dialect / "server-down").unlink(missing_ok=True)


def tool(dialect: str, name: str, *args: str, user: str = "alice") -> subprocess.CompletedProcess:
    command = [str(EMULATORS / dialect / "bin" / name), *args]
    return run(
        "runuser",
        "-u",
        user,
        "--",
        "/usr/bin/env",
        f"BNB_EMULATOR_SPOOL={SPOOL}",
        *command,
        check=False,
        cwd="/",
    )


def records(dialect: str) -> dict[str, dict]:
    """The emulator's job records by job id (LSF: the number; HTCondor: cluster.proc)."""
    found = {}
    for path in (SPOOL / dialect / "jobs").glob("*.json"):
        record = json.loads(path.read_text())
        found[record["job_id"]] = record
    return found


def cluster_for(make_cluster, dialect: str, **overrides) -> str:
    return emulated_cluster(make_cluster, dialect, **overrides)


def deleted(custom, namespace: str, name: str) -> bool:
    return not custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
    )["items"]


def test_lifecycle_submit_run_ready_delete(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace, dialect
):
    cluster = cluster_for(make_cluster, dialect)
    nb = make_notebook(cluster, user="alice")
    name = nb["metadata"]["name"]

    status = wait_phase(name, "Ready", timeout=90)
    job = records(dialect)[status["jobId"]]
    assert job["owner"] == "alice" and job["name"] == status["jobName"]
    assert job["state"] == "running" and status["execHost"] == HOST
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid 1001")
    if dialect == "htcondor":
        # The job ad carries names and resources only; the tokens stayed in the private script.
        ad = tool(dialect, "condor_q", "-allusers", "-long", status["jobId"]).stdout
        assert "BATCHNOTEBOOK_REPORT_TOKEN" not in ad and "JUPYTERHUB" not in ad
        assert 'BatchNotebook = "batchnotebook:' in ad
        assert oct(Path(job["extra"]["ad"]["Cmd"]).stat().st_mode & 0o777) == "0o700"

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(lambda: deleted(custom, namespace, name), 60, "the resource to go")
    ended = records(dialect)[status["jobId"]]
    assert ended["cancelled_by"] == "alice" and ended["state"] in ("exiting", "completed")


def test_queue_then_run_and_a_job_cancelled_outside(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, dialect, settings
):
    settings(max_running=1)
    cluster = cluster_for(make_cluster, dialect)
    first = make_notebook(cluster, user="alice")["metadata"]["name"]
    running = wait_phase(first, "Ready", timeout=90)
    second = make_notebook(cluster, user="bob")["metadata"]["name"]
    wait_phase(second, "Queued", timeout=60)
    queued = wait_for(
        lambda: (s := notebook_status(second)).get("schedulerState") and s,
        30,
        "the poll to report the second job",
    )
    assert records(dialect)[queued["jobId"]]["state"] == "queued"
    if dialect == "lsf":
        assert queued["schedulerState"] == "PEND"
        assert queued["schedulerReason"] in (
            "New job is waiting for scheduling",
            "The queue has reached its job slot limit",
        )
    else:
        assert queued["schedulerState"] == "Idle"

    cancel = ("bkill", "condor_rm")[dialect == "htcondor"]
    assert tool(dialect, cancel, running["jobId"]).returncode == 0
    ended = wait_phase(first, "Cancelled", timeout=30)
    assert ended["finishedAt"]
    ready = wait_phase(second, "Ready", timeout=90)
    assert records(dialect)[ready["jobId"]]["owner"] == "bob"


@pytest.mark.parametrize("code, phase", [(0, "Completed"), (3, "Failed")])
def test_ended_jobs(operator, make_cluster, make_notebook, wait_phase, dialect, code, phase):
    cluster = cluster_for(
        make_cluster, dialect, jupyterCommand=[JOB_PYTHON, "-c", f"import sys; sys.exit({code})"]
    )
    name = make_notebook(cluster)["metadata"]["name"]
    status = wait_phase(name, phase, timeout=90)
    if code:
        assert status["exitCode"] == code


def test_refusal_in_the_schedulers_words(
    operator, make_cluster, make_notebook, wait_phase, dialect
):
    if dialect == "lsf":
        defaults, words = {"cpus": 1, "partition": "nosuch"}, "nosuch: No such queue"
    else:
        defaults, words = {"cpus": 1, "account": "nosuch"}, "Unknown accounting group nosuch"
    cluster = cluster_for(make_cluster, dialect, profiles=[{"name": "small", "defaults": defaults}])
    status = wait_phase(make_notebook(cluster)["metadata"]["name"], "Failed", timeout=60)
    assert (
        status["message"].startswith("the scheduler refused the job:")
        and words in status["message"]
    )


def test_scheduler_down_never_ends_a_notebook(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, custom, dialect, settings
):
    cluster = cluster_for(make_cluster, dialect)
    ready = make_notebook(cluster)["metadata"]["name"]
    before = wait_phase(ready, "Ready", timeout=90)
    (SPOOL / dialect / "server-down").touch()

    waiting = make_notebook(cluster)["metadata"]["name"]

    def unreachable():
        conditions = {c["type"]: c for c in notebook_status(ready).get("conditions", [])}
        return conditions["SchedulerReachable"]["status"] == "False" and conditions

    conditions = wait_for(unreachable, 30, "the notebook to see the scheduler silent")
    assert any(
        word in conditions["SchedulerReachable"]["message"]
        for word in ("not responding", "Failed to fetch ads", "Cannot connect")
    )
    pending = wait_phase(waiting, "Pending", timeout=30)
    assert "waiting for the scheduler" in pending.get("message", "")
    # The round writes the notebooks' conditions before the cluster's own status.
    wait_for(lambda: cluster_unreachable(custom, cluster), 30, "the cluster to be unreachable")
    time.sleep(6)  # several polls with no answer
    assert notebook_status(ready)["phase"] == "Ready"
    assert notebook_status(waiting)["phase"] == "Pending"

    (SPOOL / dialect / "server-down").unlink()
    after = wait_phase(waiting, "Ready", timeout=90)
    assert after["jobId"] != before["jobId"]
    assert wait_phase(ready, "Ready")["jobId"] == before["jobId"]
