"""The attacks of issue 11, performed on the real Slurm and the real operator: bob names his jobs
after alice's notebook (he reads her tag in `squeue`), an admin requeues a Ready notebook's job,
a job reports a host that is not the scheduler's, a site leaves execHosts at its defaults."""

from __future__ import annotations

import base64
import time

import pytest

from batchnotebook_operator.schedulers.slurm import Slurm

from .conftest import GROUP, VERSION
from .stack import run, squeue, wait_for
from .test_operator import events_of, post_raw, post_report

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]
POLL = 2  # the test clusters' pollIntervalSeconds


def as_bob(*argv: str) -> str:
    return run("sudo", "-n", "-u", "bob", "--", *argv).stdout.strip()


def bobs_impostor(tag: str) -> str:
    """A job of bob's carrying alice's tag, in a partition squeue lists after hers."""
    return as_bob(
        "sbatch", "--parsable", f"--job-name={tag}", "--partition=debug",
        "--output=/dev/null", "--wrap", "sleep 600",
    )  # fmt: skip


def job_state(job_id: str) -> str:
    return run("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T").stdout


def test_bobs_namesake_jobs_neither_decide_alices_phase_nor_take_her_cancel(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, custom, namespace
):
    cluster = make_cluster()
    # squeue sorts by partition: alice's job in batch, bob's in debug come after it.
    notebook = make_notebook(cluster, user="alice", resources={"partition": "batch"})
    name, uid = notebook["metadata"]["name"], notebook["metadata"]["uid"]
    ready = wait_phase(name, "Ready")
    tag = f"bnb-{uid}"
    cancelled = bobs_impostor(tag)
    running = ""
    try:
        as_bob("scancel", cancelled)  # listed CANCELLED after her RUNNING job for 5 minutes
        time.sleep(3 * POLL)
        status = notebook_status(name)
        assert status["phase"] == "Ready" and status["jobId"] == ready["jobId"]
        assert status["url"] == ready["url"]

        running = bobs_impostor(tag)
        wait_for(lambda: "RUNNING" in job_state(running), 60, "bob's namesake to run")
        # alice stops her server: her job ends, bob's is not touched (the operator went for
        # bob's job and left hers running without a notebook before).
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
        wait_for(
            lambda: (
                not any(
                    j["id"] == ready["jobId"] and j["state"] in ("PENDING", "RUNNING")
                    for j in squeue(tag)
                )
            ),
            60,
            "alice's job to end",
        )
        assert "RUNNING" in job_state(running)
    finally:
        run("scancel", *filter(None, (running, cancelled)), check=False)


def test_the_default_template_cannot_be_requeued(operator, make_cluster, make_notebook, wait_phase):
    notebook = make_notebook(make_cluster(), user="alice")
    ready = wait_phase(notebook["metadata"]["name"], "Ready")
    refused = run("scontrol", "requeue", ready["jobId"], check=False)
    assert refused.returncode != 0 and "RUNNING" in job_state(ready["jobId"])


def test_a_ready_notebooks_requeued_job_loses_its_route_and_is_cancelled(
    operator, make_cluster, make_notebook, wait_phase
):
    # A site's own template that leaves requeueing to Slurm's default (JobRequeue=1).
    template = Slurm.default_template().replace("#SBATCH --no-requeue\n", "")
    notebook = make_notebook(make_cluster(jobTemplate=template), user="alice")
    name = notebook["metadata"]["name"]
    ready = wait_phase(name, "Ready")
    # What Slurm does to a job whose node fails, as an admin's hold-and-requeue does it.
    run("scontrol", "requeuehold", ready["jobId"])
    failed = wait_phase(name, "Failed", timeout=30)
    assert "back in the queue" in failed["message"] and not failed.get("url")
    wait_for(
        lambda: "CANCELLED" in job_state(ready["jobId"]) or not job_state(ready["jobId"]).strip(),
        30,
        "the requeued job to be cancelled",
    )


def test_the_proxy_is_never_sent_to_a_host_the_cluster_does_not_allow(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, core, namespace
):
    # A site that left execHosts at its defaults: this machine's jobs run on `vm`, which resolves
    # to loopback (the hub's own services live there).
    cluster = make_cluster(execHosts={})
    name = make_notebook(cluster, user="alice")["metadata"]["name"]
    wait_for(
        lambda: ("Warning", "HostRefused") in [e[:2] for e in events_of(core, namespace, name)],
        60,
        "a HostRefused warning",
    )
    time.sleep(3 * POLL)  # the job reported its port by now: still nothing to route to
    status = notebook_status(name)
    assert status["phase"] == "Starting" and not status.get("url") and not status.get("execHost")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "HostRefused" and "loopback" in ready["message"]
    refused = [e for e in events_of(core, namespace, name) if e[1] == "HostRefused"]
    assert len(refused) == 1, refused  # said once, not every round


def test_a_report_must_name_the_schedulers_host_in_full(
    operator, make_cluster, make_notebook, wait_phase, core, namespace
):
    name = make_notebook(make_cluster(), user="bob")["metadata"]["name"]
    ready = wait_phase(name, "Ready")
    secret = core.read_namespaced_secret(f"{name}-env", namespace).data
    token = base64.b64decode(secret["BATCHNOTEBOOK_REPORT_TOKEN"]).decode()
    # Same short name as the scheduler's `vm`, another machine: refused.
    assert post_report(namespace, name, {"host": "vm.attacker.example", "port": 1}, token) == 403
    # A body deeper than the schema: a 4xx, never a 500 (RecursionError before).
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    assert post_raw(namespace, name, deep, token) in (400, 413)
    assert wait_phase(name, "Ready")["url"] == ready["url"]


def test_a_notebook_cannot_take_another_notebooks_secret(
    operator, make_cluster, make_notebook, wait_phase
):
    """Whoever can write a BatchNotebook names alice's Secret in bob's notebook: her tokens would
    go into a job bob owns."""
    cluster = make_cluster()
    alices = make_notebook(cluster, user="alice")["metadata"]["name"]
    bobs = make_notebook(cluster, user="bob", envSecretName=f"{alices}-env")
    failed = wait_phase(bobs["metadata"]["name"], "Failed")
    submitted = next(c for c in failed["conditions"] if c["type"] == "Submitted")
    assert submitted["reason"] == "SecretNotOwned", failed
    assert "jobId" not in failed and squeue(f"bnb-{bobs['metadata']['uid']}") == []
    wait_phase(alices, "Ready")  # hers is untouched
