"""The ssh transport end to end: the operator reaches a real OpenSSH sshd on loopback
(dev/sshd.sh, its own config and host key in the test state directory) as the service account
batchnotebook, which submits and cancels through sudo as the notebook's user on the real Slurm."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes.client import ApiException

from .conftest import GROUP, OPERATOR_NAMESPACE, SSHD_DIR, SSHD_PORT, VERSION, sshd
from .stack import STATE, run, squeue, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

SSHD_LOG = STATE / "logs" / "sshd.log"
POLL_SECONDS = 2
ACCEPTED = re.compile(
    r"Accepted publickey for batchnotebook from 127\.0\.0\.1 port (\d+) ssh2: \S+ (SHA256:\S+)"
)
SESSION = re.compile(r"Starting session: command for batchnotebook from 127\.0\.0\.1 port (\d+)")


@pytest.fixture
def key_secret(operator_secret, login_node):
    """The operator's private key in a Secret of the operator's own namespace (the reference in
    the BatchCluster names no namespace)."""
    key = (SSHD_DIR / "id_ed25519").read_bytes()
    return operator_secret("ssh-key", {"ssh-privatekey": key}), OPERATOR_NAMESPACE


def ssh_connection(secret: str, host_key: str | None = None) -> dict:
    return {
        "type": "ssh",
        "ssh": {
            "host": "127.0.0.1",
            "port": SSHD_PORT,
            "hostKey": host_key or sshd("host-key"),
            "privateKeySecret": {"name": secret},
            "keepaliveSeconds": 2,
        },
    }


def log_since(offset: int) -> str:
    with SSHD_LOG.open() as log:
        log.seek(offset)
        return log.read()


def operator_connections(operator) -> int:
    """Established TCP connections from the operator process to our sshd."""
    out = run("ss", "-Htnp", "state", "established", f"( dport = :{SSHD_PORT} )").stdout
    return sum(f"pid={operator.process.pid}," in line for line in out.splitlines())


def reachable(custom, cluster: str) -> dict:
    status = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
        "status", {}
    )
    return next((c for c in status.get("conditions", []) if c["type"] == "SchedulerReachable"), {})


def conditions(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def delete_and_wait(custom, namespace: str, name: str, tag: str) -> None:
    """Delete a notebook and wait until the scheduler ended its job (cancelled over ssh) and the
    resource is gone."""
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: not any(j["state"] in ("PENDING", "RUNNING", "COMPLETING") for j in squeue(tag)),
        60,
        f"the job of {name} to end",
    )
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "batchnotebooks", field_selector=f"metadata.name={name}"
            )["items"]
        ),
        60,
        f"{name} to go",
    )


def test_lifecycle_over_one_ssh_connection(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace, key_secret
):
    offset = SSHD_LOG.stat().st_size
    cluster = make_cluster(
        connection=ssh_connection(key_secret[0]), pollIntervalSeconds=POLL_SECONDS
    )
    nb = make_notebook(cluster, user="alice")
    name, tag = nb["metadata"]["name"], f"bnb-{nb['metadata']['uid']}"

    status = wait_phase(name, "Ready", timeout=90)
    jobs = squeue(tag)
    assert len(jobs) == 1 and jobs[0]["user"] == "alice" and jobs[0]["state"] == "RUNNING"
    assert status["jobId"] == jobs[0]["id"] and status["execHost"] == jobs[0]["host"]
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith("stand-in for alice as uid ")
    # Submitted from alice's home on the login node: the job's relative output path is there.
    output = Path("/home/alice") / f"batchnotebook-{status['jobId']}.log"
    wait_for(output.exists, 10, f"{output} to appear")
    assert output.owner() == "alice"
    assert reachable(custom, cluster)["status"] == "True"

    time.sleep(3 * POLL_SECONDS)  # a few poll rounds more on the same connection
    assert operator_connections(operator) == 1

    delete_and_wait(custom, namespace, name, tag)
    assert squeue(tag)[0]["state"] == "CANCELLED"

    log = log_since(offset)
    logins = ACCEPTED.findall(log)
    sessions = SESSION.findall(log)
    # version, lookups, sbatch, every poll's squeue, scancel: many commands, one login.
    assert len(logins) == 1, log
    assert len(sessions) >= 6 and set(sessions) == {logins[0][0]}, log


def test_host_keys_from_a_known_hosts_secret(
    operator, make_cluster, make_notebook, wait_phase, custom, key_secret, operator_secret
):
    """A site's known_hosts file, kept in a Secret, pins the login node instead of an inline
    hostKey; the CRD takes exactly one of the two."""
    known_hosts = f"# the site's file\n[127.0.0.1]:{SSHD_PORT} {sshd('host-key')}\n"
    secret = operator_secret("known-hosts", {"known_hosts": known_hosts.encode()})
    connection = ssh_connection(key_secret[0])
    del connection["ssh"]["hostKey"]
    connection["ssh"]["knownHostsSecret"] = {"name": secret}
    cluster = make_cluster(connection=connection, pollIntervalSeconds=POLL_SECONDS)
    nb = make_notebook(cluster, user="alice")
    wait_phase(nb["metadata"]["name"], "Ready", timeout=90)
    assert reachable(custom, cluster)["status"] == "True"

    both = ssh_connection(key_secret[0])
    both["ssh"]["knownHostsSecret"] = {"name": secret}
    with pytest.raises(ApiException) as refused:
        make_cluster(connection=both)
    assert refused.value.status == 422
    assert "set exactly one of hostKey and knownHostsSecret" in refused.value.body


def test_a_wrong_host_key_is_refused_and_nothing_is_submitted(
    operator, make_cluster, make_notebook, notebook_status, custom, key_secret, tmp_path
):
    impostor = tmp_path / "impostor"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", impostor)
    offset = SSHD_LOG.stat().st_size
    cluster = make_cluster(
        connection=ssh_connection(
            key_secret[0], host_key=f"[127.0.0.1]:{SSHD_PORT} {Path(f'{impostor}.pub').read_text()}"
        ),
        pollIntervalSeconds=POLL_SECONDS,
    )
    nb = make_notebook(cluster, user="bob")
    name, tag = nb["metadata"]["name"], f"bnb-{nb['metadata']['uid']}"

    refused = wait_for(
        lambda: (c := reachable(custom, cluster)).get("status") == "False" and c,
        60,
        "the cluster to be unreachable",
    )
    assert "host key" in refused["message"] and "was refused" in refused["message"], refused
    status = wait_for(
        lambda: (s := notebook_status(name)).get("conditions") and s,
        60,
        "the notebook to say it waits for the scheduler",
    )
    time.sleep(3 * POLL_SECONDS)
    status = notebook_status(name)
    assert status["phase"] == "Pending" and "jobId" not in status, status
    assert conditions(status)["SchedulerReachable"] == "False"
    assert "was refused" in status["message"]
    assert squeue(tag) == []
    assert ACCEPTED.findall(log_since(offset)) == [], "the operator must not even log in"


def test_sshd_outage_and_key_rotation_end_no_notebook(
    operator,
    core,
    namespace,
    make_cluster,
    make_notebook,
    wait_phase,
    notebook_status,
    custom,
    key_secret,
):
    secret, secret_namespace = key_secret
    cluster = make_cluster(connection=ssh_connection(secret), pollIntervalSeconds=POLL_SECONDS)
    notebooks = [make_notebook(cluster, user=user) for user in ("alice", "bob")]
    names = [nb["metadata"]["name"] for nb in notebooks]
    before = {n: wait_phase(n, "Ready", timeout=90) for n in names}

    sshd("stop")
    try:
        wait_for(
            lambda: reachable(custom, cluster).get("status") == "False",
            60,
            "the cluster to be marked unreachable",
        )
        # Meanwhile the operator's key is rotated: only the new key is authorized after the
        # restart, so the reconnection must read the Secret again.
        for old in (SSHD_DIR / "id_ed25519", SSHD_DIR / "id_ed25519.pub"):
            old.unlink()
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", SSHD_DIR / "id_ed25519")
        core.patch_namespaced_secret(
            secret,
            secret_namespace,
            {"stringData": {"ssh-privatekey": (SSHD_DIR / "id_ed25519").read_text()}},
        )
        time.sleep(10)
        for name in names:
            status = notebook_status(name)
            assert status["phase"] == "Ready", status
            assert conditions(status)["SchedulerReachable"] == "False"
    finally:
        offset = SSHD_LOG.stat().st_size
        sshd("start")

    wait_for(
        lambda: reachable(custom, cluster).get("status") == "True",
        90,
        "the operator to reconnect",
    )
    for name in names:
        wait_for(
            lambda n=name: conditions(notebook_status(n)).get("SchedulerReachable") == "True",
            60,
            f"{name} to see the scheduler again",
        )
        after = notebook_status(name)
        assert after["phase"] == "Ready" and after["jobId"] == before[name]["jobId"]
    new_fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", SSHD_DIR / "id_ed25519.pub"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    logins = ACCEPTED.findall(log_since(offset))
    assert [fingerprint for _, fingerprint in logins] == [new_fingerprint]
    assert operator_connections(operator) == 1
    # And it still acts: the jobs are cancelled over the new connection.
    for nb in notebooks:
        delete_and_wait(custom, namespace, nb["metadata"]["name"], f"bnb-{nb['metadata']['uid']}")
        assert squeue(f"bnb-{nb['metadata']['uid']}")[0]["state"] == "CANCELLED"
