import datetime as dt

from batchnotebook_operator.follow import from_job, ready_fields, unreachable, vanished
from batchnotebook_operator.model import JobState, JobStatus


def job(state, **kw):
    return JobStatus(job_id="7", state=state, raw_state=kw.pop("raw", state.name), **kw)


def conditions(status):
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_queued_with_reason_and_expected_start():
    start = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    t = from_job(
        {"phase": "Queued", "jobId": "7"},
        job(JobState.PENDING, raw="PENDING", reason="Resources", expected_start=start),
    )
    assert "phase" not in t.status and t.status["schedulerReason"] == "Resources"
    assert t.status["expectedStartTime"] == "2026-11-23T03:00:00Z"
    assert "Resources" in t.status["message"]
    assert [e[1] for e in t.events] == ["Queued"]


def test_nothing_changed_means_no_write():
    first = from_job({"phase": "Queued"}, job(JobState.PENDING, raw="PENDING", reason="Priority"))
    status = {"phase": "Queued", **first.status}
    again = from_job(status, job(JobState.PENDING, raw="PENDING", reason="Priority"))
    assert not again and again.events == []


def test_running_then_ready_when_report_matches():
    t = from_job({"phase": "Queued"}, job(JobState.RUNNING, exec_host="vm"))
    assert t.status["phase"] == "Starting" and t.status["execHost"] == "vm"
    assert conditions(t.status)["Running"] == "True"
    status = {"phase": "Starting", **t.status, "reportedHost": "vm.local", "reportedPort": 8888}
    ready = from_job(status, job(JobState.RUNNING, exec_host="vm"))
    assert ready.status["phase"] == "Ready" and ready.status["url"] == "http://vm:8888"
    assert conditions(ready.status)["Ready"] == "True"


def test_report_from_another_host_is_not_ready():
    status = {
        "phase": "Starting",
        "execHost": "node1",
        "reportedHost": "node2",
        "reportedPort": 8888,
    }
    assert ready_fields(status, 1) == {}


def test_host_rewrite():
    t = from_job(
        {"phase": "Queued"},
        job(JobState.RUNNING, exec_host="node1"),
        {"domainSuffix": ".cluster.example.org"},
    )
    assert t.status["execHost"] == "node1.cluster.example.org"


def test_ended_states():
    for state, phase in (
        (JobState.FINISHED, "Completed"),
        (JobState.FAILED, "Failed"),
        (JobState.CANCELLED, "Cancelled"),
    ):
        t = from_job({"phase": "Ready"}, job(state, exit_code=3, reason="x"))
        assert t.status["phase"] == phase and t.status["exitCode"] == 3
        assert t.status["finishedAt"]


def test_unknown_state_changes_nothing_but_reachability():
    t = from_job({"phase": "Ready", "conditions": []}, job(JobState.UNKNOWN, raw="WEIRD"))
    assert "phase" not in t.status


def test_unreachable_scheduler_never_ends_a_notebook():
    t = unreachable({"phase": "Ready"}, "Unable to contact slurm controller")
    assert set(t.status) == {"conditions"}
    assert conditions(t.status)["SchedulerReachable"] == "False"
    again = unreachable({"phase": "Ready", **t.status}, "Unable to contact slurm controller")
    assert not again


def test_vanished_only_after_grace():
    assert not vanished({"phase": "Ready"}, "7", 30)
    t = vanished({"phase": "Ready"}, "7", 600)
    assert t.status["phase"] == "Failed" and "no longer knows job 7" in t.status["message"]
