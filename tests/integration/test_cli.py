"""The admin CLI against the real API server, the real Slurm and the operator."""

from __future__ import annotations

import base64
import json
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GROUP, VERSION
from .stack import run, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

CLI = Path(sys.executable).parent / "batchnotebook"


@pytest.fixture
def batchnotebook(kubeconfig):
    def call(*args: str) -> subprocess.CompletedProcess:
        return run(CLI, "--kubeconfig", kubeconfig, *args, check=False)

    return call


def reachable(custom, cluster: str) -> str | None:
    """The cluster's Reachable condition once the operator has polled it."""
    status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
        "status", {}
    )
    return next(
        (c["status"] for c in status.get("conditions", []) if c["type"] == "SchedulerReachable"),
        None,
    )


def directives(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_render_and_status_match_what_slurm_has(
    operator,
    make_cluster,
    make_notebook,
    wait_phase,
    notebook_status,
    core,
    namespace,
    batchnotebook,
):
    cluster = make_cluster()
    nb = make_notebook(cluster, resources={"cpus": 2, "walltime": "00:30:00"})
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]
    status = wait_phase(name, "Ready")
    # The script exactly as Slurm stored it at submission.
    submitted = run("scontrol", "write", "batch_script", status["jobId"], "-").stdout

    # Slurm keeps no value of the notebook's Secret: the job read them from a private file in the
    # user's home, which the launcher deleted before Jupyter started.
    secret = core.read_namespaced_secret(f"{name}-env", namespace).data
    tokens = [base64.b64decode(v).decode() for k, v in secret.items() if k.endswith("TOKEN")]
    assert tokens and not [token for token in tokens if token in submitted]
    home = pwd.getpwnam(nb["spec"]["unixUser"]).pw_dir
    assert f'"/.batchnotebook/env/{uid}\n' in submitted
    assert not (Path(home) / ".batchnotebook/env" / uid).exists()

    # For the notebook: the same script, byte for byte.
    rendered = batchnotebook("render", "--notebook", name, "-n", namespace)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == submitted

    # For a user and profile: what the same options give, but for the notebook's own name and uid.
    sample = batchnotebook(
        "render", cluster, "small", "-n", namespace, "--user", "alice",
        "--set", "cpus=2", "--set", "walltime=00:30:00",
    )  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    assert directives(sample.stdout) == [
        line.replace(f"bnb-{uid}", "'bnb-<uid>'").replace(
            f"batchnotebook:{namespace}/{name}", f"'batchnotebook:{namespace}/<notebook>'"
        )
        for line in directives(submitted)
    ]
    assert "#SBATCH --cpus-per-task=2" in directives(sample.stdout)
    assert sample.stdout.split("\nexec ", 1)[1] == submitted.split("\nexec ", 1)[1]
    assert "/.batchnotebook/env/'<uid>'\n" in sample.stdout

    refused = batchnotebook("render", cluster, "small", "--set", "cpus=64")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        "Invalid server options: cpus must be between 1 and 2 in profile 'small', not 64\n"
    )

    table = batchnotebook("status", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "NAMESPACE", "NAME", "USER", "CLUSTER", "PROFILE", "PHASE", "JOBID", "SCHEDULER",
        "HOST:PORT", "AGE", "ENDS",
    ]  # fmt: skip
    [line] = [r for r in rows if r.split()[1] == name]
    host_port = f"{status['execHost']}:{status['port']}"
    assert line.split()[:9] == [
        namespace, name, "alice", cluster, "small", "Ready", status["jobId"], "RUNNING", host_port
    ]  # fmt: skip
    assert line.split()[-1] == notebook_status(name)["endsAt"]

    as_json = batchnotebook("status", "-A", "-o", "json")
    [entry] = [e for e in json.loads(as_json.stdout) if e["name"] == name]
    assert entry["scheduler_state"] == "RUNNING" and entry["unknown_to_scheduler"] is False
    assert entry["job_id"] == status["jobId"] and entry["address"] == host_port


def test_doctor_passes_a_good_cluster_and_fails_a_broken_one(
    operator, make_cluster, custom, batchnotebook
):
    good = make_cluster()
    broken = make_cluster(
        jobTemplate="#!/bin/bash\n#SBATCH --job-name={{ job_name }}\n{% if %}\n",
        callbackURL="http://127.0.0.1:9/services/batchnotebook",  # nothing listens on discard
        connection={"type": "local", "binDirectory": "/nonexistent/slurm/bin"},
    )
    wait_for(lambda: reachable(custom, good) == "True", 30, "the operator to poll the good one")
    wait_for(lambda: reachable(custom, broken) == "False", 30, "the operator to fail the other")

    passed = batchnotebook("doctor", good)
    assert passed.returncode == 0, passed.stdout
    lines = passed.stdout.splitlines()
    assert lines[0].startswith(f"OK   {good}: scheduler (slurm over local): answers, version 22.05")
    assert lines[1].startswith(f"OK   {good}: operator: polls; the scheduler answered ")
    assert lines[2] == f"OK   {good}: profile small: defaults within limits, template renders"
    assert lines[3].startswith(f"OK   {good}: callbackURL: http://127.0.0.1:")
    assert lines[4] == "4 checks: 0 FAIL, 0 WARN"

    failed = batchnotebook("doctor", broken, "no-such-cluster")
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert lines[0].startswith(
        f"FAIL {broken}: scheduler (slurm over local): no answer: cannot run "
        "/nonexistent/slurm/bin/sinfo: [Errno 2] No such file or directory"
    )
    assert lines[1].startswith(f"FAIL {broken}: operator: its last poll (")
    assert "got no answer: cannot run /nonexistent/slurm/bin/sinfo" in lines[1]
    assert lines[2].startswith(
        f"FAIL {broken}: profile small: the cluster's job template does not render: "
    )
    assert lines[3].startswith(
        f"FAIL {broken}: callbackURL: http://127.0.0.1:9/services/batchnotebook/healthz "
        "does not answer ("
    )
    assert lines[4] == "FAIL no-such-cluster: cluster: there is no BatchCluster of that name"
    assert lines[5] == "5 checks: 5 FAIL, 0 WARN"
