"""The second site: Slurm 24.11 from Debian 13 in a root filesystem and network namespaces of its
own (dev/trixie.sh): a login node tx-login (sshd), tx-ctl (slurmctld, slurmdbd with MariaDB,
slurmrestd with JWT) and two compute nodes tx-c1 and tx-c2, each with its own host name and
address on a private bridge, homes shared between them. The operator reaches it only as it would
a remote site, over SSH and over REST; the notebooks' URLs are the compute nodes' own addresses."""

from __future__ import annotations

import asyncio
import shlex
import socket
import urllib.request

import pytest

from batchnotebook_operator.clients.slurmrest.client import SlurmRestClient
from batchnotebook_operator.errors import SchedulerUnavailable

from .conftest import GROUP, SSHD_DIR, VERSION, cluster_spec
from .stack import JOB_PYTHON, OPERATOR_PORT, REPO, STAND_IN, run, wait_for
from .test_slurmrest import SecretReader

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

TRIXIE = REPO / "dev" / "trixie.sh"
BRIDGE_ADDRESS = "10.250.0.1"  # this machine on the site's bridge: the operator's report port
LOGIN = "10.250.0.11"
SLURMRESTD = "http://10.250.0.10:6820"
COMPUTE = {"tx-c1": "10.250.0.21", "tx-c2": "10.250.0.22"}


def trixie(*args: str) -> str:
    return run(TRIXIE, *args).stdout


def squeue(tag: str) -> list[dict]:
    """The site's own view of our jobs (as root on its login node)."""
    out = trixie("exec", "tx-login", "squeue", "-h", "-t", "all", "-n", tag, "-o", "%i|%u|%T|%N")
    jobs = []
    for line in out.splitlines():
        job_id, user, state, nodes = line.split("|")
        jobs.append({"id": job_id, "user": user, "state": state, "nodes": nodes})
    return jobs


@pytest.fixture(scope="module")
def site(login_node):
    """The site running, with the tests' operator key authorized on its login node."""
    trixie("start")
    trixie("authorize", str(SSHD_DIR / "id_ed25519.pub"))
    return trixie("host-key").strip()


@pytest.fixture
def ssh_secret(operator_secret, site):
    return operator_secret("trixie-ssh", {"ssh-privatekey": (SSHD_DIR / "id_ed25519").read_bytes()})


@pytest.fixture
def jwt_secret(operator_secret, site):
    key_path = trixie("jwt-key-path").strip()
    with open(key_path, "rb") as key:
        return operator_secret("trixie-jwt", {"jwt_hs256.key": key.read()})


def site_spec(connection: dict, **overrides) -> dict:
    """The tests' cluster settings, for a site whose compute nodes have addresses of their own:
    the jobs report to this machine's end of the bridge, routes go only to the site's nodes."""
    spec = cluster_spec(
        connection=connection,
        callbackURL=f"http://{BRIDGE_ADDRESS}:{OPERATOR_PORT}",
        execHosts={"patterns": ["tx-c*"], "networks": ["10.250.0.0/24"]},
        **overrides,
    )
    spec["profiles"][0]["limits"] |= {"maxNodes": 2, "maxTasksPerNode": 2}
    return spec


def ssh_connection(secret: str, host_key: str) -> dict:
    return {
        "type": "ssh",
        "ssh": {
            "host": LOGIN,
            "port": 22,
            "hostKey": host_key,
            "privateKeySecret": {"name": secret},
        },
    }


def rest_connection(secret: str, api_version: str | None = None) -> dict:
    rest = {"url": SLURMRESTD, "jwtKeySecret": {"name": secret}, "homeDirectory": "/home/{user}"}
    if api_version:
        rest["apiVersion"] = api_version
    return {"type": "slurmrest", "slurmrest": rest}


def cluster_status(custom, cluster: str) -> dict:
    return custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
        "status", {}
    )


def reachable(custom, cluster: str) -> dict:
    conditions = cluster_status(custom, cluster).get("conditions", [])
    return next((c for c in conditions if c["type"] == "SchedulerReachable"), {})


def answers_from_its_node(status: dict, user: str) -> None:
    """The notebook's URL names a compute node, which resolves to that node's own address, and
    the server there answers as the user."""
    host = status["execHost"]
    assert host in COMPUTE
    assert socket.gethostbyname(host) == COMPUTE[host]
    with urllib.request.urlopen(status["url"], timeout=10) as answer:
        assert answer.read().decode().startswith(f"stand-in for {user} as uid ")


def ends_when_deleted(custom, namespace: str, name: str, tag: str) -> None:
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks", name)
    wait_for(
        lambda: all(j["state"] not in ("PENDING", "RUNNING") for j in squeue(tag)),
        60,
        f"the job of {name} to be cancelled",
    )


def test_lifecycle_over_ssh(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace, site, ssh_secret
):
    cluster = make_cluster(**site_spec(ssh_connection(ssh_secret, site)))
    nb = make_notebook(cluster, user="alice")
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]
    status = wait_phase(name, "Ready", timeout=120)
    (job,) = squeue(f"bnb-{uid}")
    assert (job["id"], job["user"], job["state"]) == (status["jobId"], "alice", "RUNNING")
    answers_from_its_node(status, "alice")
    assert cluster_status(custom, cluster)["schedulerVersion"].startswith("24.11")
    ends_when_deleted(custom, namespace, name, f"bnb-{uid}")


@pytest.mark.parametrize(
    ("pinned", "spoken"),
    [(None, "v0.0.42 (newest both speak)"), ("v0.0.40", "v0.0.40 (pinned)")],
)
def test_lifecycle_over_rest_in_the_negotiated_version(
    operator, make_cluster, make_notebook, wait_phase, custom, namespace, jwt_secret, pinned, spoken
):
    cluster = make_cluster(**site_spec(rest_connection(jwt_secret, pinned)))
    nb = make_notebook(cluster, user="bob")
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]
    status = wait_phase(name, "Ready", timeout=120)
    (job,) = squeue(f"bnb-{uid}")
    assert (job["id"], job["user"], job["state"]) == (status["jobId"], "bob", "RUNNING")
    answers_from_its_node(status, "bob")
    wait_for(lambda: cluster_status(custom, cluster).get("apiVersion") == spoken, 30, spoken)
    assert cluster_status(custom, cluster)["schedulerVersion"].startswith("24.11")
    ends_when_deleted(custom, namespace, name, f"bnb-{uid}")


def test_a_pinned_version_the_site_lacks_says_what_it_offers(
    operator, make_cluster, custom, jwt_secret
):
    cluster = make_cluster(**site_spec(rest_connection(jwt_secret, "v0.0.38")))
    wait_for(
        lambda: reachable(custom, cluster).get("status") == "False",
        60,
        "the cluster to be unreachable",
    )
    assert (
        "v0.0.38 is pinned, but slurmrestd offers only v0.0.40, v0.0.41, v0.0.42"
        in (reachable(custom, cluster)["message"])
    )


@pytest.mark.parametrize("transport", ["ssh", "slurmrest"])
def test_a_two_node_notebook_uses_both_nodes(
    operator,
    make_cluster,
    make_notebook,
    wait_phase,
    custom,
    namespace,
    site,
    ssh_secret,
    jwt_secret,
    transport,
):
    # What Jupyter's terminals and kernels get is the environment it starts in: srun there
    # runs on the whole allocation.
    command = (
        'srun -N2 hostname | sort > "$HOME/srun-$SLURM_JOB_ID.out" 2>&1; '
        'echo "$BATCHNOTEBOOK_NODES" > "$HOME/nodes-$SLURM_JOB_ID.out"; '
        f"exec {JOB_PYTHON} -c {shlex.quote(STAND_IN)}"
    )
    connection = (
        ssh_connection(ssh_secret, site) if transport == "ssh" else rest_connection(jwt_secret)
    )
    cluster = make_cluster(**site_spec(connection, jupyterCommand=["/bin/bash", "-c", command]))
    nb = make_notebook(cluster, user="alice", resources={"nodes": 2, "tasks_per_node": 1})
    name, uid = nb["metadata"]["name"], nb["metadata"]["uid"]
    status = wait_phase(name, "Ready", timeout=120)
    (job,) = squeue(f"bnb-{uid}")
    assert job["nodes"] == "tx-c[1-2]"
    # Jupyter runs on the first node of the allocation.
    assert status["execHost"] == "tx-c1"
    answers_from_its_node(status, "alice")
    job_id = status["jobId"]
    home = trixie("exec", "tx-login", "cat", f"/home/alice/srun-{job_id}.out")
    assert home.split() == ["tx-c1", "tx-c2"]
    nodes = trixie("exec", "tx-login", "cat", f"/home/alice/nodes-{job_id}.out")
    assert nodes.split() == ["tx-c1", "tx-c2"]
    ends_when_deleted(custom, namespace, name, f"bnb-{uid}")


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41", "v0.0.42"])
def test_a_users_token_cannot_cancel_another_users_job(
    operator, make_cluster, make_notebook, wait_phase, custom, core, jwt_secret, version
):
    # v0.0.40 and v0.0.41 answer a refused cancel with HTTP 200 and no error at all; v0.0.42 only
    # in the job's status. Either way it must not read as done.
    cluster = make_cluster(**site_spec(rest_connection(jwt_secret, version)))
    bob = make_notebook(cluster, user="bob")
    status = wait_phase(bob["metadata"]["name"], "Ready", timeout=120)
    spec = custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)["spec"]

    async def as_alice() -> str:
        client = SlurmRestClient("itest-alice", spec, SecretReader(core))
        try:
            await client.cancel([status["jobId"]], "alice")
        except SchedulerUnavailable as error:
            return str(error)
        finally:
            await client.close()
        return "cancelled"

    refusal = asyncio.run(as_alice())
    assert "as alice" in refusal and status["jobId"] in refusal
    if version == "v0.0.42":
        assert "Access/permission denied" in refusal
    (job,) = squeue(f"bnb-{bob['metadata']['uid']}")
    assert (job["state"], job["user"]) == ("RUNNING", "bob")
