import datetime as dt

from batchnotebook_api.texts import duration_text, plain_reason, progress_message, when_text
from batchnotebook_api.times import now
from batchnotebook_operator.follow import from_job, ready_fields, unreachable, vanished
from batchnotebook_operator.job_log import job_output_path, needs_log_tail, with_log_tail
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.queue import queue_wait_exceeded


def job(state, **kw):
    return JobStatus(job_id="7", state=state, raw_state=kw.pop("raw", state.name), **kw)


def conditions(status):
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_queued_with_reason_and_expected_start():
    start = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    t = from_job(
        {"phase": "Queued", "jobId": "7"},
        job(JobState.PENDING, raw="PENDING", reason="Resources", expected_start=start),
        now(),
    )
    assert "phase" not in t.status and t.status["schedulerReason"] == "Resources"
    assert t.status["expectedStartTime"] == "2026-11-23T03:00:00Z"
    assert "Resources" in t.status["message"]
    assert [e[1] for e in t.events] == ["Queued"]


def test_nothing_changed_means_no_write():
    first = from_job(
        {"phase": "Queued"}, job(JobState.PENDING, raw="PENDING", reason="Priority"), now()
    )
    status = {"phase": "Queued", **first.status}
    again = from_job(status, job(JobState.PENDING, raw="PENDING", reason="Priority"), now())
    assert not again and again.events == []


def test_running_then_ready_when_report_matches():
    t = from_job({"phase": "Queued"}, job(JobState.RUNNING, exec_host="vm"), now())
    assert t.status["phase"] == "Starting" and t.status["execHost"] == "vm"
    assert conditions(t.status)["Running"] == "True"
    status = {"phase": "Starting", **t.status, "reportedHost": "VM.", "reportedPort": 8888}
    ready = from_job(status, job(JobState.RUNNING, exec_host="vm"), now())
    assert ready.status["phase"] == "Ready" and ready.status["url"] == "http://vm:8888"
    assert conditions(ready.status)["Ready"] == "True"


def test_report_from_another_host_is_not_ready():
    status = {
        "phase": "Starting",
        "execHost": "node1",
        "reportedHost": "node2",
        "reportedPort": 8888,
    }
    assert ready_fields(status, 1, now()) == {}


def test_host_rewrite():
    t = from_job(
        {"phase": "Queued"},
        job(JobState.RUNNING, exec_host="node1"),
        now(),
        {"domainSuffix": ".cluster.example.org"},
    )
    assert t.status["execHost"] == "node1.cluster.example.org"


def test_ended_states():
    for state, phase in (
        (JobState.FINISHED, "Completed"),
        (JobState.FAILED, "Failed"),
        (JobState.CANCELLED, "Cancelled"),
    ):
        t = from_job({"phase": "Ready"}, job(state, exit_code=3, reason="x"), now())
        assert t.status["phase"] == phase and t.status["exitCode"] == 3
        assert t.status["finishedAt"]


def test_unknown_state_changes_nothing_but_reachability():
    t = from_job({"phase": "Ready", "conditions": []}, job(JobState.UNKNOWN, raw="WEIRD"), now())
    assert "phase" not in t.status


def test_unreachable_scheduler_never_ends_a_notebook():
    t = unreachable({"phase": "Ready"}, "Unable to contact slurm controller", now())
    assert set(t.status) == {"conditions"}
    assert conditions(t.status)["SchedulerReachable"] == "False"
    again = unreachable({"phase": "Ready", **t.status}, "Unable to contact slurm controller", now())
    assert not again


def test_vanished_only_after_grace():
    assert not vanished({"phase": "Ready"}, "7", 30, now())
    t = vanished({"phase": "Ready"}, "7", 600, now())
    assert t.status["phase"] == "Failed" and "no longer knows job 7" in t.status["message"]


NOW = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)


def test_duration_text():
    assert [duration_text(s) for s in (-3, 40, 300, 7200, 5400)] == [
        "0 s",
        "40 s",
        "5 min",
        "2 h",
        "1 h 30 min",
    ]


def test_plain_reason_keeps_the_schedulers_word():
    assert plain_reason("Resources") == "waiting for free resources (Resources)"
    assert plain_reason("SomethingNew") == "SomethingNew"


def test_progress_tells_the_story():
    submitted = {"phase": "Queued", "jobId": "7", "message": "job 7 submitted to c, waiting"}
    assert progress_message(submitted, NOW) == "job 7 submitted to c, waiting"
    queued = {
        **submitted,
        "schedulerState": "PENDING",
        "schedulerReason": "Resources",
        "expectedStartTime": "2026-11-23T06:00:00Z",
        "submittedAt": "2026-11-23T04:55:00Z",
    }
    assert progress_message(queued, NOW) == (
        "job 7 waits in the queue, waiting for free resources (Resources), "
        "expected to start at 06:00 UTC (in 1 h), waited 5 min"
    )
    assert progress_message({"phase": "Ready", "message": "ready"}, NOW) == "ready"


def test_queue_wait_exceeded_only_when_queued_too_long():
    status = {
        "phase": "Queued",
        "jobId": "7",
        "schedulerReason": "Resources",
        "submittedAt": "2026-11-23T02:59:00Z",
    }
    t = queue_wait_exceeded(status, 7200, NOW)
    assert t.status["phase"] == "Failed"
    assert t.status["message"] == (
        "waited 2 h 1 min in the queue (Resources), the profile allows 2 h; cancelled"
    )
    assert conditions(t.status)["Ready"] == "False"
    assert t.events[0][:2] == ("Warning", "MaxQueueWait")
    assert not queue_wait_exceeded(status, 7300, NOW)
    assert not queue_wait_exceeded({**status, "phase": "Starting"}, 60, NOW)


def test_log_tail_joins_a_failure_of_a_started_job():
    failed = from_job({"phase": "Starting"}, job(JobState.FAILED, raw="FAILED", exit_code=3), now())
    assert needs_log_tail({"phase": "Starting"}, failed)
    assert needs_log_tail({"phase": "Queued"}, failed)  # crashed before a poll saw it run
    assert not needs_log_tail({"phase": "Failed"}, failed)
    with_tail = with_log_tail(failed, "Traceback\nboom\n")
    assert with_tail.status["message"].endswith("the job's log ends with:\nTraceback\nboom")
    assert with_tail.events == failed.events
    assert with_log_tail(failed, "  \n") is failed
    long = with_log_tail(failed, "x" * 5000).status["message"]
    assert len(long) < 2200 and "…" in long


def test_job_output_path():
    assert job_output_path("logs/bnb-%j.log", "42") == "logs/bnb-42.log"


def test_an_expected_start_reads_as_a_time_of_day():
    assert when_text("2026-11-23T06:00:00Z", NOW) == "at 06:00 UTC (in 1 h)"
    assert when_text("2026-11-24T06:30:00+00:00", NOW) == "at 2026-11-24 06:30 UTC (in 25 h 30 min)"
    assert when_text("2026-11-23T04:00:00Z", NOW) == "at 04:00 UTC (any moment now)"
