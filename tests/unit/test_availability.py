"""The availability snapshot: the backends' partition and queue parsers on captured outputs
(tests/fixtures/<scheduler>/README.md says where each comes from), the snapshot they make, the
queue place written into a notebook's status and what the spawn page says about it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from batchnotebook_api.texts import progress_message
from batchnotebook_api.times import now
from batchnotebook_operator.clients.commandline import CommandLineClient
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.follow import from_job
from batchnotebook_operator.model import (
    JobState,
    JobStatus,
    PartitionLoad,
    QueuedJob,
    QueuePlace,
    availability,
)
from batchnotebook_operator.queue import queue_place
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.schedulers.sge import GridEngine
from batchnotebook_operator.schedulers.slurm import Slurm, gpu_count
from batchnotebook_operator.schedulers.slurm_json import parse_partition_loads, parse_queued_jobs
from batchnotebook_operator.transports import CommandResult

FIXTURES = Path(__file__).parents[1] / "fixtures"

# The captured Slurm cluster: node vm (16 CPUs) in debug and batch; job 1019 runs with 2 CPUs in
# debug; 1020 (priority ...750), 1021 (--nice=100) and 1023 (batch) wait for --begin, 1022 is
# held (priority 0) and may run in debug or batch.
SLURM_PARTITIONS = [
    {
        "name": "debug",
        "state": "up",
        "cpusIdle": 14,
        "cpusTotal": 16,
        "gpusIdle": 0,
        "gpusTotal": 0,
        "nodesIdle": 0,
        "nodesTotal": 1,
        "jobsPending": 3,
        "jobsRunning": 1,
    },
    {
        "name": "batch",
        "state": "up",
        "cpusIdle": 14,
        "cpusTotal": 16,
        "gpusIdle": 0,
        "gpusTotal": 0,
        "nodesIdle": 0,
        "nodesTotal": 1,
        "jobsPending": 2,
        "jobsRunning": 0,
    },
]
SLURM_PLACES = {
    "1020": QueuePlace("debug", 1, 3),
    "1021": QueuePlace("debug", 2, 3),
    "1022": QueuePlace("debug", 3, 3),
    "1023": QueuePlace("batch", 1, 2),
}


def fixture(scheduler: str, name: str) -> str:
    return (FIXTURES / scheduler / name).read_text()


def test_slurm_cli_snapshot():
    slurm = Slurm()
    taken = availability(
        slurm.parse_partitions(fixture("slurm", "sinfo-nodes.txt")),
        slurm.parse_all_jobs(fixture("slurm", "squeue-pending-running.txt")),
    )
    assert [p.as_status() for p in taken.partitions] == SLURM_PARTITIONS
    assert taken.places == SLURM_PLACES


def test_slurmrest_snapshot_says_what_the_command_line_says():
    loads = parse_partition_loads(
        json.loads(fixture("slurmrest", "partitions-http200.json")),
        json.loads(fixture("slurmrest", "nodes-http200.json")),
    )
    jobs = parse_queued_jobs(json.loads(fixture("slurmrest", "jobs-queue-http200.json")))
    taken = availability(loads, jobs)
    assert [p.as_status() for p in taken.partitions] == SLURM_PARTITIONS
    assert taken.places == SLURM_PLACES


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("(null)", 0),
        ("gpu:4", 4),
        ("gpu:a100:4(S:0-1)", 4),
        ("gpu:a100:2(S:0),gpu:v100:1(S:1)", 3),
        ("gpu:a100:2(IDX:0-1),shard:0", 2),
        ("gpumem:40G,shard:8", 0),
    ],
)
def test_gpus_in_a_gres_list(gres, gpus):
    assert gpu_count(gres) == gpus


def test_slurm_gpu_nodes_and_a_drained_node():
    # Lines in the captured format (sinfo -N -O as in Slurm's "partitions" command) for a GPU
    # partition: g1 has 2 of its 4 GPUs in use, g2 is drained (sinfo: its CPUs are "other").
    stdout = (
        "gpu|up|g1|mixed|8/24/0/32|gpu:a100:4(S:0-1)|gpu:a100:2(IDX:0-1)\n"
        "gpu|up|g2|drained|0/0/32/32|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)\n"
        "gpu|up|g3|idle|0/32/0/32|gpu:a100:4(S:0-1)|gpu:a100:0(IDX:N/A)\n"
    )
    [gpu] = Slurm().parse_partitions(stdout)
    assert gpu == PartitionLoad(
        name="gpu",
        state="up",
        cpus_idle=56,
        cpus_total=96,
        gpus_idle=6,
        gpus_total=12,
        nodes_idle=1,
        nodes_total=3,
    )


def test_grid_engine_snapshot():
    sge = GridEngine()
    taken = availability(
        sge.parse_partitions(fixture("sge", "qstat-f-running.xml")),
        sge.parse_all_jobs(fixture("sge", "qstat-pending-r.xml")),
    )
    # Job 130 runs on 2 of vm's 16 slots; 131 (held) and 133 (held) asked for all.q, 132 for no
    # queue (it counts in every queue); no GPU count: Grid Engine has none of its own.
    assert [p.as_status() for p in taken.partitions] == [
        {
            "name": "all.q",
            "state": "up",
            "cpusIdle": 14,
            "cpusTotal": 16,
            "nodesIdle": 0,
            "nodesTotal": 1,
            "jobsPending": 3,
            "jobsRunning": 1,
        }
    ]
    assert taken.places == {
        "131": QueuePlace("all.q", 1, 3),
        "132": QueuePlace("all.q", 2, 3),
        "133": QueuePlace("all.q", 3, 3),
    }


def test_grid_engine_idle_and_disabled_queue_instances():
    idle = GridEngine().parse_partitions(fixture("sge", "qstat-f-running-empty.xml"))
    assert idle == [
        PartitionLoad("all.q", "up", 16, 16, None, None, 1, 1, None, 0),
    ]
    # The same instance disabled with qmod -d (qstat adds <state>d</state>): no slot is free.
    disabled = fixture("sge", "qstat-f-running-empty.xml").replace(
        "<arch>lx-amd64</arch>", "<arch>lx-amd64</arch>\n      <state>d</state>"
    )
    assert GridEngine().parse_partitions(disabled) == [
        PartitionLoad("all.q", "disabled", 0, 16, None, None, 0, 1, None, 0),
    ]


def test_half_an_xml_answer_is_no_answer():
    with pytest.raises(SchedulerUnavailable):
        GridEngine().parse_partitions(fixture("sge", "qstat-f-running.xml")[:300])


def test_counts_and_places():
    partitions = [PartitionLoad("a", "up"), PartitionLoad("b", "up", jobs_pending=9)]
    jobs = [
        QueuedJob("1", ("a",), True),
        QueuedJob("2", (), True),  # any partition
        QueuedJob("3", ("gone", "b"), True),  # a partition not reported is skipped
        QueuedJob("4", ("a",), False),
    ]
    taken = availability(partitions, jobs)
    assert [(p.jobs_pending, p.jobs_running) for p in taken.partitions] == [(2, 1), (9, 0)]
    assert taken.places == {
        "1": QueuePlace("a", 1, 2),
        "2": QueuePlace("a", 2, 2),
        "3": QueuePlace("b", 2, 2),
    }
    # No job listing: the counts stay unreported.
    assert availability(partitions, None).partitions[0].jobs_pending is None


class Replies:
    """A transport that answers each command from a captured output and counts the calls."""

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.calls: list[list[str]] = []

    async def run(self, argv, *, user=None, stdin=None) -> CommandResult:
        self.calls.append(argv)
        return CommandResult(tuple(argv), 0, self.outputs[argv[0]], "")

    async def close(self) -> None:
        pass


async def test_a_slurm_snapshot_is_one_sinfo_and_one_squeue():
    client = CommandLineClient("c", {"scheduler": "slurm", "connection": {"type": "local"}})
    client.transport = Replies(
        {
            "sinfo": fixture("slurm", "sinfo-nodes.txt"),
            "squeue": fixture("slurm", "squeue-pending-running.txt"),
        }
    )
    taken = await client.availability()
    assert [argv[0] for argv in client.transport.calls] == ["sinfo", "squeue"]
    assert taken.places == SLURM_PLACES


@pytest.mark.parametrize(
    "scheduler",
    sorted(name for name, backend in BACKENDS.items() if "partitions" not in backend.commands),
)
async def test_a_backend_without_partition_commands_reports_none(scheduler):
    client = CommandLineClient("c", {"scheduler": scheduler, "connection": {"type": "local"}})
    client.transport = Replies({})
    taken = await client.availability()
    assert taken.partitions == () and taken.places == {} and client.transport.calls == []


def test_the_place_is_written_when_it_changes_and_removed_when_gone():
    places = {"7": QueuePlace("debug", 3, 17)}
    queued = {"phase": "Queued", "jobId": "7"}
    place = {"queuePosition": 3, "queueLength": 17, "queuePartition": "debug"}
    assert queue_place(queued, places).status == place
    assert not queue_place({**queued, **place}, places)  # unchanged: no write
    assert queue_place({**queued, **place}, {"7": QueuePlace("debug", 2, 17)}).status == {
        "queuePosition": 2
    }
    gone = dict.fromkeys(place)
    assert queue_place({**queued, **place}, {}).status == gone
    assert not queue_place(queued, {})  # nothing to remove
    assert not queue_place({"phase": "Starting", "jobId": "7"}, places)


def test_leaving_the_queue_clears_the_place():
    status = {
        "phase": "Queued",
        "jobId": "7",
        "queuePosition": 1,
        "queueLength": 4,
        "queuePartition": "debug",
    }
    running = from_job(status, JobStatus("7", JobState.RUNNING, "RUNNING", exec_host="vm"), now())
    assert running.status["phase"] == "Starting"
    assert {k: running.status[k] for k in ("queuePosition", "queueLength", "queuePartition")} == {
        "queuePosition": None,
        "queueLength": None,
        "queuePartition": None,
    }
    still = from_job(status, JobStatus("7", JobState.PENDING, "PENDING", reason="Priority"), now())
    assert "queuePosition" not in still.status


def test_progress_says_the_position():
    now = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)
    status = {
        "phase": "Queued",
        "jobId": "123",
        "schedulerState": "PENDING",
        "schedulerReason": "Resources",
        "queuePosition": 3,
        "queueLength": 17,
        "queuePartition": "debug",
        "expectedStartTime": "2026-11-23T06:00:00Z",
        "submittedAt": "2026-11-23T04:58:00Z",
    }
    assert progress_message(status, now) == (
        "job 123 waits in the queue, waiting for free resources (Resources), "
        "position 3 of 17 in debug, expected to start at 06:00 UTC (in 1 h), waited 2 min"
    )


def test_pbspro_snapshot_from_the_emulator():
    pbs = BACKENDS["pbspro"]()
    taken = availability(
        pbs.parse_partitions(
            fixture("pbspro", "qstat-Q-f-json.emulator.json"),
            fixture("pbspro", "pbsnodes-a-json.emulator.json"),
        ),
        pbs.parse_all_jobs(fixture("pbspro", "qstat-f-json-queue.emulator.json")),
    )
    # One 16-CPU node serves every queue (it names none); the emulator reports no GPUs.
    assert taken.partitions[0].as_status() == {
        "name": "workq",
        "state": "up",
        "cpusIdle": 14,
        "cpusTotal": 16,
        "nodesIdle": 0,
        "nodesTotal": 1,
        "jobsPending": 2,
        "jobsRunning": 1,
    }
    assert [p.name for p in taken.partitions] == ["workq", "debug", "batch"]
    assert taken.places == {"2.vm": QueuePlace("workq", 1, 2), "3.vm": QueuePlace("workq", 2, 2)}


def test_pbspro_real_queue_and_node_listings():
    [workq] = BACKENDS["pbspro"]().parse_partitions(
        fixture("pbspro", "qstat-Q-f-json.buildtest-19.0.json"),
        fixture("pbspro", "pbsnodes-a-json.polaris-2022.1.json"),
    )
    # Polaris: one free node (64 CPUs, 4 GPUs idle), one job-exclusive, one down.
    assert workq == PartitionLoad(
        name="workq",
        state="up",
        cpus_idle=64,
        cpus_total=192,
        gpus_idle=4,
        gpus_total=12,
        nodes_idle=1,
        nodes_total=3,
        jobs_pending=0,
        jobs_running=0,
    )


def test_lsf_snapshot_from_the_emulator():
    lsf = BACKENDS["lsf"]()
    taken = availability(
        lsf.parse_partitions(
            fixture("lsf", "bqueues-w.emulator.txt"), fixture("lsf", "bhosts-w.emulator.txt")
        ),
        lsf.parse_all_jobs(fixture("lsf", "bjobs-all-json.emulator.json")),
    )
    assert taken.partitions[0].as_status() == {
        "name": "normal",
        "state": "open:active",
        "cpusIdle": 14,
        "cpusTotal": 16,
        "nodesIdle": 0,
        "nodesTotal": 1,
        "jobsPending": 2,
        "jobsRunning": 1,
    }
    assert taken.places == {
        "2": QueuePlace("normal", 1, 2),
        "3": QueuePlace("normal", 2, 2),
        "4": QueuePlace("short", 1, 1),
    }


def test_lsf_real_tables():
    lsf = BACKENDS["lsf"]()
    queues = lsf.parse_partitions(
        fixture("lsf", "bqueues.triton.txt"), fixture("lsf", "bhosts.ibm-cloud.txt")
    )
    assert [(q.name, q.state, q.jobs_pending, q.jobs_running) for q in queues] == [
        ("bigmem", "open:active", 1120, 32),
        ("normal", "open:active", 5969, 3437),
        ("interactive", "open:active", 1, 12),
    ]
    # the closed host's slots are not idle; every host counts for every queue
    assert (queues[0].cpus_idle, queues[0].cpus_total) == (8, 8)
    assert (queues[0].nodes_idle, queues[0].nodes_total) == (2, 3)
    # hosts without a slot limit ("-"): their CPUs are not counted, so none are reported
    [normal] = lsf.parse_partitions(
        "QUEUE_NAME PRIO STATUS MAX JL/U JL/P JL/H NJOBS PEND RUN SUSP\n"
        "normal 30 Open:Active - - - - 0 0 0 0\n",
        fixture("lsf", "bhosts.lsf-pod.txt"),
    )
    assert normal.cpus_total is None and normal.cpus_idle is None and normal.nodes_total == 4


def test_torque_snapshot_from_the_emulator():
    torque = BACKENDS["torque"]()
    taken = availability(
        torque.parse_partitions(
            fixture("torque", "qstat-Q.emulator.txt"), fixture("torque", "pbsnodes-x.emulator.xml")
        ),
        torque.parse_all_jobs(fixture("torque", "qstat-x-queue.emulator.xml")),
    )
    assert taken.partitions[1].as_status() == {
        "name": "debug",
        "state": "up",
        "cpusIdle": 14,
        "cpusTotal": 16,
        "nodesIdle": 0,
        "nodesTotal": 1,
        "jobsPending": 2,
        "jobsRunning": 1,
    }
    assert taken.places == {"2.vm": QueuePlace("debug", 1, 2), "3.vm": QueuePlace("debug", 2, 2)}


def test_torque_real_queue_table_and_nodes():
    torque = BACKENDS["torque"]()
    queues = torque.parse_partitions(
        fixture("torque", "qstat-Q.gold6240R.txt"), fixture("torque", "pbsnodes-x.ral.xml")
    )
    assert [(q.name, q.state, q.jobs_pending, q.jobs_running) for q in queues] == [
        ("zhou", "up", 0, 0),
        ("gold6240R", "up", 4, 6),
    ]
    # down and job-exclusive nodes take nothing; the free one has 2 of 4 processors left; its
    # GPUs (none) count only on a node without jobs
    assert queues[0] == PartitionLoad(
        name="zhou",
        state="up",
        cpus_idle=2,
        cpus_total=6,
        gpus_idle=0,
        gpus_total=0,
        nodes_idle=0,
        nodes_total=3,
        jobs_pending=0,
        jobs_running=0,
    )
    assert [q.name for q in torque.parse_partitions(fixture("torque", "qstat-Q.hamilton.txt"))] == [
        "default",
        "debug",
    ]
