"""The operator against the real API server and real Slurm."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from .conftest import GROUP, VERSION, cluster_spec
from .stack import OPERATOR_PORT, run, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


def post_report(namespace, name, body, token, what=""):
    return post_raw(namespace, name, json.dumps(body).encode(), token, what)


def post_raw(namespace: str, name: str, body: bytes, token: str, what: str = "") -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{OPERATOR_PORT}/v1/report/{namespace}/{name}{what}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def events_of(core, namespace, name):
    return [
        (e.type, e.reason, e.message)
        for e in core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
    ]


def test_lifecycle_submit_run_ready_delete(
    operator, make_cluster, make_notebook, wait_phase, custom, core, namespace
):
    cluster = make_cluster()
    nb = make_notebook(cluster, user="alice")
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]

    status = wait_phase(name, "Ready")
    cluster_status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)
    assert cluster_status["status"]["schedulerVersion"].startswith("22.05")
    jobs = squeue(f"bnb-{uid}")
    assert len(jobs) == 1 and jobs[0]["user"] == "alice" and jobs[0]["state"] == "RUNNING"
    assert status["jobId"] == jobs[0]["id"] and status["execHost"] == jobs[0]["host"]
    # The job really serves on the port it reported, as alice.
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid ")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Submitted": "True",
        "Running": "True",
        "Ready": "True",
        "SchedulerReachable": "True",
    }
    reasons = [reason for _, reason, _ in events_of(core, namespace, name)]
    assert {"Submitted", "Running", "Ready"} <= set(reasons)

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: (
            not any(
                j["state"] in ("PENDING", "RUNNING", "COMPLETING") for j in squeue(f"bnb-{uid}")
            )
        ),
        60,
        "the job to end",
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


def test_reports_are_checked(operator, make_cluster, make_notebook, wait_phase, core, namespace):
    cluster = make_cluster()
    name = make_notebook(cluster, user="bob")["metadata"]["name"]
    status = wait_phase(name, "Ready")
    secret = core.read_namespaced_secret(f"{name}-env", namespace).data
    import base64

    token = base64.b64decode(secret["BATCHNOTEBOOK_REPORT_TOKEN"]).decode()

    assert post_report(namespace, name, {"host": "vm", "port": 1}, "wrong") == 401
    assert post_report(namespace, "nosuch", {"host": "vm", "port": 1}, token) == 401
    assert post_report(namespace, name, {"host": "vm", "port": 1, "exec_prefix": "x"}, token) == 400
    assert post_report(namespace, name, {"host": "vm; id", "port": 1}, token) == 400
    assert post_report(namespace, name, {"host": "vm", "port": 70000}, token) == 400
    assert post_report(namespace, name, {"host": "elsewhere", "port": 1}, token) == 403
    assert post_report(namespace, name, {}, "wrong", what="/ended") == 401
    assert ("Warning", "ReportRejected") in [e[:2] for e in events_of(core, namespace, name)]
    after = wait_phase(name, "Ready")
    assert after["url"] == status["url"] and after["port"] == status["port"]


def test_over_limit_notebook_written_by_hand_is_refused(
    operator, make_cluster, make_notebook, wait_phase
):
    cluster = make_cluster()
    nb = make_notebook(cluster, resources={"cpus": 64})
    status = wait_phase(nb["metadata"]["name"], "Failed")
    assert "cpus must be between 1 and 2" in status["message"]
    assert squeue(f"bnb-{nb['metadata']['uid']}") == []


def metric(name: str, **labels: str) -> float | None:
    """One sample of the operator's /metrics, parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{OPERATOR_PORT}/metrics", timeout=10) as page:
        text = page.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


def test_metrics_tell_queue_wait_time_to_ready_phases_and_commands(
    operator, make_cluster, make_notebook, wait_phase
):
    cluster = make_cluster()
    name = make_notebook(cluster)["metadata"]["name"]
    wait_phase(name, "Ready")
    assert metric("batchnotebook_queue_wait_seconds_count", cluster=cluster) == 1
    assert metric("batchnotebook_time_to_ready_seconds_count", cluster=cluster) == 1
    assert metric("batchnotebook_time_to_ready_seconds_sum", cluster=cluster) > 0
    wait_for(
        lambda: metric("batchnotebook_notebooks", cluster=cluster, phase="Ready") == 1,
        30,
        "the phase gauge to count the notebook",
    )
    assert metric("batchnotebook_notebooks", cluster=cluster, phase="Queued") == 0
    ok = "batchnotebook_scheduler_commands_total"
    assert metric(ok, cluster=cluster, command="submit", outcome="ok") == 1
    assert metric(ok, cluster=cluster, command="query", outcome="ok") >= 1
    latency = "batchnotebook_scheduler_command_seconds_count"
    assert metric(latency, cluster=cluster, command="query") >= 1
    with urllib.request.urlopen(f"http://127.0.0.1:{OPERATOR_PORT}/readyz", timeout=10) as page:
        assert json.loads(page.read()) == {"ready": True}


def test_group_overrides_follow_the_groups_in_the_spec(
    operator, make_cluster, make_notebook, wait_phase
):
    """The operator validates with the groups the hub recorded, as the spawner did: members of
    an override's group get its limits, everyone else the profile's own."""
    profile = cluster_spec()["profiles"][0]
    profile["groupOverrides"] = [{"groups": ["staff"], "limits": {"maxCpus": 3}}]
    cluster = make_cluster(profiles=[profile])
    refused = make_notebook(cluster, resources={"cpus": 3}, groups=["students"])
    accepted = make_notebook(cluster, resources={"cpus": 3}, groups=["students", "staff"])
    status = wait_phase(refused["metadata"]["name"], "Failed")
    assert "cpus must be between 1 and 2" in status["message"]
    assert squeue(f"bnb-{refused['metadata']['uid']}") == []
    assert wait_phase(accepted["metadata"]["name"], "Ready")["jobId"]
    (job,) = squeue(f"bnb-{accepted['metadata']['uid']}")
    assert "NumCPUs=3" in run("scontrol", "show", "job", job["id"]).stdout


def test_unix_user_must_match_the_mapping(operator, make_cluster, make_notebook, wait_phase):
    cluster = make_cluster()
    nb = make_notebook(cluster, user="alice", unixUser="bob")
    status = wait_phase(nb["metadata"]["name"], "Failed")
    assert "maps to Unix user 'alice', not 'bob'" in status["message"]
    assert squeue(f"bnb-{nb['metadata']['uid']}") == []


def test_scheduler_refusal_shows_its_own_words(operator, make_cluster, make_notebook, wait_phase):
    cluster = make_cluster(
        profiles=[{"name": "small", "defaults": {"cpus": 1, "account": "nosuch"}}]
    )
    nb = make_notebook(cluster)
    status = wait_phase(nb["metadata"]["name"], "Failed")
    assert "Invalid account" in status["message"]


def test_job_cancelled_outside_is_seen(operator, make_cluster, make_notebook, wait_phase):
    cluster = make_cluster()
    nb = make_notebook(cluster)
    status = wait_phase(nb["metadata"]["name"], "Ready", "Starting")
    from .stack import run

    run("scancel", status["jobId"])
    ended = wait_phase(nb["metadata"]["name"], "Cancelled", timeout=2 * 2 + 5)
    assert ended["finishedAt"]


def test_a_job_that_ends_is_seen_before_the_next_poll(
    operator, make_cluster, make_notebook, wait_phase
):
    """The launcher's reports bring the cluster's next poll forward: the port's (Ready) and, when
    Jupyter exits, the end's. With a 300 s interval, both show long before a poll was due."""
    cluster = make_cluster(pollIntervalSeconds=300)
    name = make_notebook(cluster)["metadata"]["name"]
    status = wait_phase(name, "Ready", timeout=60)
    run("scancel", status["jobId"])
    ended = wait_phase(name, "Cancelled", timeout=60)
    assert ended["endReportedAt"] and ended["finishedAt"]


def test_editing_a_cluster_applies_to_new_notebooks(
    operator, make_cluster, make_notebook, wait_phase, custom
):
    cluster = make_cluster()
    first = make_notebook(cluster, resources={"cpus": 2})
    wait_phase(first["metadata"]["name"], "Ready", "Starting")

    profiles = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)["spec"][
        "profiles"
    ]
    profiles[0]["limits"]["maxCpus"] = 1
    custom.patch_cluster_custom_object(
        GROUP, VERSION, "batchclusters", cluster, {"spec": {"profiles": profiles}}
    )
    second = make_notebook(cluster, resources={"cpus": 2})
    status = wait_phase(second["metadata"]["name"], "Failed")
    assert "cpus must be between 1 and 1" in status["message"]
    assert wait_phase(first["metadata"]["name"], "Ready")["jobId"]


def test_a_cluster_in_use_is_kept_until_its_notebooks_go(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace
):
    cluster = make_cluster()
    nb = make_notebook(cluster)
    wait_phase(nb["metadata"]["name"], "Ready")
    custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)
    time.sleep(3)
    held = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)
    assert held["metadata"]["deletionTimestamp"]  # waiting, not gone

    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "batchnotebooks", nb["metadata"]["name"]
    )
    wait_for(
        lambda: (
            not any(
                j["state"] in ("PENDING", "RUNNING") for j in squeue(f"bnb-{nb['metadata']['uid']}")
            )
        ),
        60,
        "the job to be cancelled through the cluster",
    )
    wait_for(
        lambda: (
            not custom.list_cluster_custom_object(
                GROUP, VERSION, "batchclusters", field_selector=f"metadata.name={cluster}"
            )["items"]
        ),
        60,
        "the cluster to go",
    )
