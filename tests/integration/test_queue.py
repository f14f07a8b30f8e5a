"""Waiting in the queue on the real Slurm: what the status and the spawn page say, the profile's
maxQueueWait, cancelling a pending spawn from the hub, and the log's tail of a crashed Jupyter.

A job is made to wait with `--begin=now+1hour` (reason BeginTime, an expected start time) rather
than by filling node vm: the Slurm here is shared with other tests, whose jobs must not queue."""

from __future__ import annotations

import datetime as dt

import pytest

from batchnotebook_api.texts import progress_message
from batchnotebook_operator.schedulers.slurm import Slurm

from .conftest import GROUP, VERSION, cluster_spec
from .stack import JOB_PYTHON, squeue, wait_for
from .test_hub import hub_stack, notebooks
from .test_operator import events_of

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

WAITING_TEMPLATE = Slurm.default_template().replace(
    "#!/bin/bash\n", "#!/bin/bash\n#SBATCH --begin=now+1hour\n", 1
)
CRASHING_JUPYTER = [
    JOB_PYTHON,
    "-c",
    # Long enough for a poll to see it run, then the way a broken Jupyter ends.
    "import sys, time; print('jupyter cannot start: no module named boom', flush=True); "
    "time.sleep(5); sys.exit(3)",
]


def profiles_with(**fields) -> list[dict]:
    return [{**profile, **fields} for profile in cluster_spec()["profiles"]]


def job_states(uid: str) -> set[str]:
    return {job["state"] for job in squeue(f"bnb-{uid}")}


def test_a_queued_job_says_why_and_is_cancelled_after_max_queue_wait(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, core, namespace
):
    cluster = make_cluster(
        jobTemplate=WAITING_TEMPLATE, profiles=profiles_with(maxQueueWait="00:00:30")
    )
    nb = make_notebook(cluster, user="alice")
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]

    status = wait_for(
        lambda: (s := notebook_status(name)).get("schedulerReason") == "BeginTime" and s,
        60,
        "the scheduler's reason",
    )
    assert status["phase"] == "Queued" and status["expectedStartTime"]
    said = progress_message(status, dt.datetime.now(dt.UTC))
    assert said.startswith(f"job {status['jobId']} waits in the queue, ")
    assert "BeginTime" in said and "expected to start" in said and ", waited " in said

    failed = wait_phase(name, "Failed", timeout=90)
    assert failed["message"].startswith("waited ")
    assert failed["message"].endswith(
        " in the queue (BeginTime), the profile allows 30 s; cancelled"
    )
    assert job_states(uid) <= {"CANCELLED"}
    assert any(e[:2] == ("Warning", "MaxQueueWait") for e in events_of(core, namespace, name))


def test_a_crashed_jupyter_shows_the_end_of_its_log(
    operator, make_cluster, make_notebook, wait_phase
):
    cluster = make_cluster(jupyterCommand=CRASHING_JUPYTER)
    nb = make_notebook(cluster, user="alice")
    failed = wait_phase(nb["metadata"]["name"], "Failed", timeout=90)
    # squeue knows the reason, not the code: the launcher's log has it, and ends with its word
    # to the operator that Jupyter exited (which brought this round forward).
    assert failed["message"].startswith("the job failed: NonZeroExitCode"), failed["message"]
    assert "the job's log ends with:" in failed["message"], failed["message"]
    assert "jupyter cannot start: no module named boom" in failed["message"]
    assert "python exited with 3\n" in failed["message"]
    assert failed["message"].endswith("told the operator that Jupyter exited")
    assert failed["endReportedAt"]


@pytest.fixture(scope="module")
def hub(kubeconfig, operator, custom, core):
    yield from hub_stack(kubeconfig, custom, core, "queue-e2e", "jupyterhub-queue")


@pytest.mark.e2e
def test_stopping_a_pending_spawn_cancels_the_queued_job(hub, custom):
    spec = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", "queue-e2e")["spec"]
    waiting = "queue-e2e-waiting"
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "batchclusters",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BatchCluster",
            "metadata": {"name": waiting},
            "spec": {**spec, "jobTemplate": WAITING_TEMPLATE},
        },
    )
    try:
        hub.api("POST", "/users/alice")
        code, answer = hub.api(
            "POST", "/users/alice/server", {"cluster": waiting, "profile": "small"}
        )
        assert code == 202, answer  # still pending: the job waits
        queued = wait_for(
            lambda: [
                n
                for n in notebooks(custom, "jupyterhub-queue")
                if n.get("status", {}).get("phase") == "Queued"
                and n["status"].get("schedulerState")
            ],
            60,
            "the job to be queued",
        )[0]
        assert hub.server("alice")["pending"] == "spawn"

        code, answer = hub.api("DELETE", "/users/alice/server")
        assert code in (202, 204), answer
        wait_for(lambda: hub.server("alice") is None, 120, "the pending server to stop")
        wait_for(lambda: not notebooks(custom, "jupyterhub-queue"), 90, "the BatchNotebook to go")
        assert job_states(queued["metadata"]["uid"]) <= {"CANCELLED"}
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", waiting)
