"""slurmrestd's OpenAPI versions: which one is spoken, how a job's options are typed from v0.0.40
on, how both generations of answers read, and when the light `jobs/state` query is enough."""

from __future__ import annotations

import datetime as dt

import pytest

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_operator.clients.slurmrest.client import listing_needed
from batchnotebook_operator.clients.slurmrest.directives import (
    job_properties,
    megabytes,
    minutes,
)
from batchnotebook_operator.clients.slurmrest.versions import SUPPORTED, choose, offered
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.schedulers.slurm_json import (
    parse_accounting,
    parse_job_states,
    parse_jobs,
    parse_partition_loads,
)


def spec_of(*versions: str) -> dict:
    paths = {f"/slurm/{v}/{rest}": {} for v in versions for rest in ("jobs", "ping")}
    return {"paths": paths | {"/openapi/v3": {}, "/slurmdb/v0.0.99/jobs": {}}}


# ---------------------------------------------------------------------------------------------
# Which version


@pytest.mark.parametrize(
    ("release", "versions", "spoken"),
    [
        ("22.05", ("v0.0.36", "v0.0.37", "v0.0.38"), "v0.0.38"),
        ("23.11", ("v0.0.38", "v0.0.39", "v0.0.40"), "v0.0.40"),
        ("24.05", ("v0.0.39", "v0.0.40", "v0.0.41"), "v0.0.41"),
        ("24.11", ("v0.0.40", "v0.0.41", "v0.0.42"), "v0.0.42"),
        ("25.05", ("v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43"), "v0.0.43"),
        ("25.11", ("v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44"), "v0.0.44"),
        ("26.05", ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"), "v0.0.44"),
    ],
)
def test_the_newest_version_both_speak(release, versions, spoken):
    assert offered(spec_of(*versions)) == set(versions)
    assert choose(offered(spec_of(*versions))).name == spoken, release


def test_a_pinned_version_is_spoken_if_offered():
    assert choose({"v0.0.40", "v0.0.41", "v0.0.42"}, "v0.0.40").name == "v0.0.40"


def test_a_pinned_version_the_server_lacks_says_what_it_offers():
    with pytest.raises(SchedulerUnavailable, match=r"v0.0.38 is pinned.*v0.0.40, v0.0.41, v0.0.42"):
        choose({"v0.0.42", "v0.0.40", "v0.0.41"}, "v0.0.38")


def test_no_version_in_common_names_both_sides():
    with pytest.raises(SchedulerUnavailable, match=r"offers v0.0.36, v0.0.37.*speaks v0.0.38"):
        choose({"v0.0.36", "v0.0.37"})


def test_only_v0_0_38_is_untyped():
    assert [v.name for v in SUPPORTED if not v.typed] == ["v0.0.38"]
    assert all(v.jobs_state for v in SUPPORTED if v.typed)


# ---------------------------------------------------------------------------------------------
# Typed options (v0.0.40+)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90", 90),
        ("90:30", 91),  # seconds round up, as Slurm does
        ("01:00:00", 60),
        ("08:00:00", 480),
        ("2-0", 2880),
        ("1-02:30", 1590),
        ("1-00:00:01", 1441),
        ("UNLIMITED", {"set": True, "infinite": True}),
    ],
)
def test_times_become_minutes(value, expected):
    assert minutes(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1G", 1024), ("512", 512), ("512M", 512), ("2048K", 2), ("1T", 1 << 20)],
)
def test_memory_becomes_megabytes(value, expected):
    assert megabytes(value) == expected


@pytest.mark.parametrize("value", ["1h", "01:00:00:00", "-5", ""])
def test_a_time_sbatch_would_refuse_is_refused(value):
    with pytest.raises(InvalidOptions, match="time"):
        minutes(value)


def test_the_default_templates_options_typed_and_untyped():
    arguments = [
        "--job-name=bnb-uid",
        "--comment=batchnotebook:ns/nb",
        "--output=/home/alice/.bnb/%j.log",
        "--ntasks=1",
        "--no-requeue",
        "--cpus-per-task=2",
        "--mem=1G",
        "--time=01:00:00",
        "--partition=debug",
        "--account=research",
        "--gres=gpu:1",
        "--nodes=2",
        "--ntasks-per-node=4",
    ]
    assert job_properties(arguments, typed=True) == {
        "name": "bnb-uid",
        "comment": "batchnotebook:ns/nb",
        "standard_output": "/home/alice/.bnb/%j.log",
        "tasks": 1,
        "requeue": False,
        "cpus_per_task": 2,
        "memory_per_node": 1024,
        "time_limit": 60,
        "partition": "debug",
        "account": "research",
        "tres_per_node": "gres/gpu:1",
        "nodes": "2",
        "tasks_per_node": 4,
    }
    legacy = job_properties(arguments)
    assert legacy["time_limit"] == "01:00:00" and legacy["memory_per_node"] == "1G"
    assert legacy["gres"] == "gpu:1" and "requeue" not in legacy  # 22.05 ignores it


def test_a_value_slurm_would_refuse_names_the_directive():
    with pytest.raises(InvalidOptions, match=r"--cpus-per-task=two: 'two' is not a whole number"):
        job_properties(["--cpus-per-task=two"], typed=True)


# ---------------------------------------------------------------------------------------------
# Answers of v0.0.40 and later (field names from Slurm's data_parser)

JOB_42 = {
    "job_id": 41,
    "name": "bnb-uid",
    "user_name": "alice",
    "job_state": ["RUNNING"],
    "state_reason": "None",
    "batch_host": "tx-c1",
    "nodes": "tx-c[1-2]",
    "start_time": {"set": True, "infinite": False, "number": 1_800_000_000},
    "submit_time": {"set": True, "infinite": False, "number": 1_799_999_990},
    "exit_code": {"status": ["PENDING"], "return_code": {"set": False, "number": 0}},
    "partition": "debug",
    "priority": {"set": True, "infinite": False, "number": 4294901758},
}


def test_a_running_job_of_v0_0_42():
    (job,) = parse_jobs({"jobs": [JOB_42]})
    assert (job.job_id, job.state, job.raw_state, job.exec_host) == (
        "41",
        JobState.RUNNING,
        "RUNNING",
        "tx-c1",
    )
    assert job.submitted_at == dt.datetime.fromtimestamp(1_799_999_990, dt.UTC)
    assert job.exit_code is None and job.reason == ""


def test_a_pending_job_of_v0_0_42_with_its_reason_and_start():
    pending = JOB_42 | {"job_state": ["PENDING"], "state_reason": "Resources", "batch_host": ""}
    (job,) = parse_jobs({"jobs": [pending]})
    assert job.state is JobState.PENDING and job.reason == "Resources" and job.exec_host == ""
    assert job.expected_start == dt.datetime.fromtimestamp(1_800_000_000, dt.UTC)


@pytest.mark.parametrize(
    ("flags", "shown", "state"),
    [
        (["RUNNING", "COMPLETING"], "COMPLETING", JobState.COMPLETING),
        (["PENDING", "REQUEUED"], "REQUEUED", JobState.PENDING),
        (["RUNNING", "CONFIGURING"], "CONFIGURING", JobState.PENDING),
        (["FAILED"], "FAILED", JobState.FAILED),
    ],
)
def test_state_flags_read_as_squeue_prints_them(flags, shown, state):
    (job,) = parse_jobs({"jobs": [JOB_42 | {"job_state": flags}]})
    assert (job.raw_state, job.state) == (shown, state)


def test_exit_codes_of_v0_0_42():
    exited = {"status": ["ERROR"], "return_code": {"set": True, "number": 3}}
    signalled = {
        "status": ["SIGNALED"],
        "return_code": {"set": False, "number": 0},
        "signal": {"id": {"set": True, "number": 9}, "name": "KILL"},
    }
    (failed,) = parse_jobs({"jobs": [JOB_42 | {"job_state": ["FAILED"], "exit_code": exited}]})
    (killed,) = parse_jobs({"jobs": [JOB_42 | {"job_state": ["FAILED"], "exit_code": signalled}]})
    assert (failed.exit_code, killed.exit_code) == (3, 137)


def test_accounting_of_v0_0_42():
    record = {
        "job_id": 41,
        "name": "bnb-uid",
        "user": "alice",
        "state": {"current": ["CANCELLED"], "reason": "None"},
        "kill_request_user": "alice",
        "nodes": "tx-c[1-2]",
        "exit_code": {"status": ["SIGNALED"], "signal": {"id": {"set": True, "number": 15}}},
        "time": {"submission": 1_799_999_990},
    }
    (job,) = parse_accounting({"jobs": [record]})
    assert (job.state, job.reason, job.exec_host, job.exit_code) == (
        JobState.CANCELLED,
        "CANCELLED by alice",
        "tx-c1",
        143,
    )


def test_job_states_answer():
    answer = {
        "jobs": [{"job_id": "41", "state": ["RUNNING"]}, {"job_id": 42, "state": ["PENDING"]}]
    }
    assert parse_job_states(answer) == {"41": "RUNNING", "42": "PENDING"}


def test_partitions_and_nodes_of_v0_0_42():
    partitions = {"partitions": [{"name": "debug", "partition": {"state": ["UP"]}}]}
    nodes = {
        "nodes": [
            {"name": "tx-c1", "state": ["IDLE"], "cpus": 8, "alloc_idle_cpus": 8,
             "partitions": ["debug"], "gres": "", "gres_used": ""},
            {"name": "tx-c2", "state": ["IDLE", "DRAIN"], "cpus": 8, "alloc_idle_cpus": 8,
             "partitions": ["debug"], "gres": "", "gres_used": ""},
        ]
    }  # fmt: skip
    (load,) = parse_partition_loads(partitions, nodes)
    assert (load.state, load.cpus_total, load.cpus_idle, load.nodes_idle, load.nodes_total) == (
        "up",
        16,
        8,
        1,
        2,
    )


# ---------------------------------------------------------------------------------------------
# The light query


def listed(state: JobState, raw: str) -> JobStatus:
    return JobStatus(job_id="41", name="bnb-uid", user="alice", state=state, raw_state=raw)


def test_no_change_needs_no_listing():
    known = {"41": listed(JobState.RUNNING, "RUNNING")}
    assert not listing_needed({"41": "RUNNING"}, known, listed_at=0.0, now=3600.0)


def test_a_changed_or_new_job_needs_the_listing():
    known = {"41": listed(JobState.PENDING, "PENDING")}
    assert listing_needed({"41": "RUNNING"}, known, listed_at=0.0, now=1.0)
    assert listing_needed({"41": "PENDING", "43": "PENDING"}, known, listed_at=0.0, now=1.0)


def test_a_job_gone_from_the_queue_needs_no_listing():
    # Accounting, not the listing, tells what became of it.
    known = {"41": listed(JobState.RUNNING, "RUNNING")}
    assert not listing_needed({}, known, listed_at=0.0, now=1.0)


def test_a_pending_jobs_reason_is_read_again_after_a_minute():
    known = {"41": listed(JobState.PENDING, "PENDING")}
    assert not listing_needed({"41": "PENDING"}, known, listed_at=0.0, now=60.0)
    assert listing_needed({"41": "PENDING"}, known, listed_at=0.0, now=60.5)
