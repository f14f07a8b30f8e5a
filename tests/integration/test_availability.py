"""The availability snapshot on the real schedulers: each partition's resources and jobs in the
BatchCluster's status, compared with what the scheduler's own tools say, and a waiting notebook's
place in its queue in its status and on the spawn page.

Jobs are made to wait with `--begin=now+1hour` as in test_queue.py, not by filling node vm: the
Slurm here is shared with other tests, whose jobs must not queue. Numbers that other tests'
jobs change at any moment (idle CPUs, pending jobs) are checked for plausibility only."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batchnotebook_api.texts import progress_message

from .conftest import GROUP, VERSION
from .emulated import SPOOL, emulated_cluster
from .stack import REPO, run, wait_for
from .test_queue import WAITING_TEMPLATE
from .test_sge import sge, sge_cluster  # noqa: F401 - fixtures
from .test_slurmrest import key_secret, rest_connection  # noqa: F401 - a fixture

pytestmark = [pytest.mark.cluster]

SNAPSHOT = 2  # seconds between snapshots in these tests


def partitions_of(custom, cluster: str) -> dict[str, dict]:
    """The cluster's last snapshot by partition, once there is one."""
    status = wait_for(
        lambda: (
            (
                s := custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster).get(
                    "status", {}
                )
            ).get("partitions")
            and s
        ),
        60,
        f"{cluster}'s availability snapshot",
    )
    assert dt.datetime.fromisoformat(status["availabilityTime"].replace("Z", "+00:00"))
    return {p["name"]: p for p in status["partitions"]}


def sinfo_partitions() -> dict[str, dict]:
    """What sinfo itself says: availability, nodes A/I/O/T, CPUs A/I/O/T per partition."""
    out = run("sinfo", "--noheader", "--format=%R|%a|%F|%C").stdout
    said = {}
    for line in out.splitlines():
        name, available, nodes, cpus = line.split("|")
        said[name] = {
            "state": available,
            "nodes": [int(n) for n in nodes.split("/")],
            "cpus": [int(n) for n in cpus.split("/")],
        }
    return said


def assert_plausible_like_sinfo(partitions: dict[str, dict]) -> None:
    said = sinfo_partitions()
    assert partitions.keys() == said.keys()
    for name, partition in partitions.items():
        assert partition["state"] == said[name]["state"]
        assert partition["cpusTotal"] == said[name]["cpus"][3]
        assert partition["nodesTotal"] == said[name]["nodes"][3]
        assert 0 <= partition["cpusIdle"] <= partition["cpusTotal"]
        assert 0 <= partition["nodesIdle"] <= partition["nodesTotal"]
        # node vm has no GPUs: Slurm reports none, which is 0, not "not reported"
        assert partition["gpusTotal"] == partition["gpusIdle"] == 0
        assert partition["jobsPending"] >= 0 and partition["jobsRunning"] >= 0


@pytest.mark.slurm
def test_slurm_partitions_in_the_cluster_status(operator, make_cluster, custom):
    cluster = make_cluster(availabilityIntervalSeconds=SNAPSHOT)
    assert_plausible_like_sinfo(partitions_of(custom, cluster))


@pytest.mark.slurm
def test_slurmrest_partitions_in_the_cluster_status(operator, make_cluster, custom, key_secret):  # noqa: F811
    cluster = make_cluster(
        connection=rest_connection(key_secret()), availabilityIntervalSeconds=SNAPSHOT
    )
    assert_plausible_like_sinfo(partitions_of(custom, cluster))


@pytest.mark.slurm
def test_a_waiting_notebook_shows_its_place_in_the_queue(
    operator, make_cluster, make_notebook, notebook_status, custom
):
    cluster = make_cluster(jobTemplate=WAITING_TEMPLATE, availabilityIntervalSeconds=SNAPSHOT)
    names = [make_notebook(cluster, user=user)["metadata"]["name"] for user in ("alice", "bob")]

    def placed() -> list[dict] | None:
        statuses = [notebook_status(name) for name in names]
        return statuses if all(s.get("queuePosition") for s in statuses) else None

    statuses = wait_for(placed, 90, "both notebooks' queue positions")
    for status in statuses:
        assert status["phase"] == "Queued" and status["queuePartition"] == "debug"
        assert 1 <= status["queuePosition"] <= status["queueLength"]
        said = progress_message(status, dt.datetime.now(dt.UTC))
        assert (
            f", position {status['queuePosition']} of {status['queueLength']} in debug, " in said
        ), said
    # priority/basic: the earlier job has the higher priority and starts first
    first, second = sorted(statuses, key=lambda s: int(s["jobId"]))
    assert first["queuePosition"] < second["queuePosition"]
    # squeue agrees that both wait in debug, with every other pending job counted
    pending = run(
        "squeue", "--noheader", "--all", "--states=PENDING", "--partition=debug", "--format=%i"
    ).stdout.split()
    assert {first["jobId"], second["jobId"]} <= set(pending)
    assert partitions_of(custom, cluster)["debug"]["jobsPending"] >= 2


def test_grid_engine_queues_in_the_cluster_status(operator, sge_cluster, custom):  # noqa: F811
    cluster = sge_cluster(availabilityIntervalSeconds=SNAPSHOT)
    partitions = partitions_of(custom, cluster)
    # qstat -g c: CLUSTER QUEUE, CQLOAD, USED, RES, AVAIL, TOTAL, aoACDS, cdsuE
    summary = run("qstat", "-g", "c").stdout.splitlines()[2:]
    said = {line.split()[0]: [int(n) for n in line.split()[2:6]] for line in summary}
    assert partitions.keys() == said.keys()
    for name, partition in partitions.items():
        assert partition["cpusTotal"] == said[name][3]
        assert 0 <= partition["cpusIdle"] <= partition["cpusTotal"]
        assert "gpusTotal" not in partition  # Grid Engine has no GPU count of its own
        assert partition["jobsPending"] >= 0 and partition["jobsRunning"] >= 0


#: Each emulated scheduler runs one job at a time; its queues hold the profile's partitions.
EMULATED = {
    "pbspro": {"max_running": 1},
    "torque": {"max_running": 1},
    "lsf": {"max_running": 1, "queues": ["normal", "debug", "batch"], "default_queue": "normal"},
}


@pytest.fixture(params=sorted(EMULATED))
def one_job_at_a_time(request):
    """An emulated scheduler of this test stack that runs one job at a time: the others wait."""
    run(REPO / "dev/emulators.sh", "install", SPOOL)
    settings = SPOOL / request.param / "config.json"
    settings.write_text(json.dumps({**EMULATED[request.param], "kill_delay_seconds": 2}))
    yield request.param
    settings.unlink(missing_ok=True)


def test_emulated_queues_and_positions(
    one_job_at_a_time, operator, make_cluster, make_notebook, wait_phase, notebook_status, custom
):
    cluster = emulated_cluster(
        make_cluster, one_job_at_a_time, availabilityIntervalSeconds=SNAPSHOT
    )
    running = make_notebook(cluster, user="alice")["metadata"]["name"]
    wait_phase(running, "Starting", "Ready", timeout=90)
    waiting = [make_notebook(cluster, user=user)["metadata"]["name"] for user in ("bob", "alice")]

    def placed() -> list[dict] | None:
        statuses = [notebook_status(name) for name in waiting]
        return statuses if all(s.get("queuePosition") for s in statuses) else None

    statuses = sorted(
        wait_for(placed, 90, "the queue positions"), key=lambda s: int(s["jobId"].split(".")[0])
    )
    # the scheduler's own listing, first come first served
    assert [(s["queuePosition"], s["queueLength"]) for s in statuses] == [(1, 2), (2, 2)]
    assert {s["queuePartition"] for s in statuses} == {"debug"}
    debug = wait_for(
        lambda: (p := partitions_of(custom, cluster)["debug"])["jobsPending"] == 2 and p,
        30,
        "the snapshot to count both waiting jobs",
    )
    assert debug["jobsRunning"] == 1 and debug["cpusTotal"] == 16
    assert debug["state"] in ("up", "open:active")
    assert "gpusTotal" not in debug  # the emulated node has no GPUs
    assert notebook_status(running).get("queuePosition") is None
