"""Walltime: the end the user sees (endsAt), one warning before it, and a clean stop before the
scheduler's kill."""

import datetime as dt
import sys

import pytest
from test_launcher import STAND_IN, Receiver, run_launcher

from batchnotebook_api.times import now, timestamp
from batchnotebook_operator.follow import from_job, walltime_end
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.render import stop_after_seconds

NOW = dt.datetime.now(dt.UTC)


def ready_status(**overrides) -> dict:
    return {
        "phase": "Ready",
        "jobId": "7",
        "execHost": "vm",
        "startedAt": timestamp(NOW - dt.timedelta(minutes=55)),
        "walltimeSeconds": 3600,
        "conditions": [],
        **overrides,
    }


def running(**kw) -> JobStatus:
    return JobStatus(job_id="7", state=JobState.RUNNING, raw_state="RUNNING", exec_host="vm", **kw)


def types(status: dict) -> dict:
    return {c["type"]: c["status"] for c in status["conditions"]}


@pytest.mark.parametrize(
    "walltime, stop_before, stop_after",
    [(3600, 120, 3480), (120, 120, 60), (3600, 0, None), (None, 120, None)],
)
def test_stop_after_leaves_the_margin_but_at_most_half_the_walltime(
    walltime, stop_before, stop_after
):
    assert stop_after_seconds(walltime, stop_before) == stop_after


def test_ends_at_prefers_the_schedulers_own_end():
    end = NOW + dt.timedelta(minutes=30)
    started = timestamp(NOW - dt.timedelta(minutes=10))
    assert walltime_end(running(ends_at=end), started, 3600) == timestamp(end)
    assert walltime_end(running(), started, 3600) == timestamp(NOW + dt.timedelta(minutes=50))
    assert walltime_end(running(), started, None) is None


def test_running_notebook_gets_ends_at_and_no_warning_while_far():
    status = ready_status(startedAt=timestamp(NOW - dt.timedelta(minutes=5)))
    transition = from_job(status, running(), now(), walltime_warning_seconds=600)
    assert transition.status["endsAt"] == timestamp(NOW + dt.timedelta(minutes=55))
    assert "WalltimeEnding" not in types(transition.status)
    assert not transition.events


def test_warning_once_when_the_end_is_near():
    status = ready_status()  # 5 min left
    first = from_job(status, running(), now(), walltime_warning_seconds=600)
    assert types(first.status)["WalltimeEnding"] == "True"
    [(kind, reason, message)] = first.events
    assert (kind, reason) == ("Warning", "WalltimeEnding")
    assert "save your work" in message and first.status["endsAt"] in message
    again = from_job({**status, **first.status}, running(), now(), walltime_warning_seconds=600)
    assert not again.events and "conditions" not in again.status


def test_no_warning_before_ready_nor_when_disabled():
    starting = from_job(
        ready_status(phase="Starting"), running(), now(), walltime_warning_seconds=600
    )
    assert "WalltimeEnding" not in types(starting.status)
    disabled = from_job(ready_status(), running(), now(), walltime_warning_seconds=0)
    assert "WalltimeEnding" not in types(disabled.status) and not disabled.events


def test_a_stop_after_the_warning_ends_completed_with_a_clear_message():
    status = ready_status()
    warned = {**status, **from_job(status, running(), now(), walltime_warning_seconds=600).status}
    ended = JobStatus(job_id="7", state=JobState.FINISHED, raw_state="COMPLETED", exit_code=0)
    transition = from_job(warned, ended, now())
    assert transition.status["phase"] == "Completed"
    assert transition.status["message"].startswith("the server was stopped before its walltime")
    assert warned["endsAt"] in transition.status["message"]


def test_launcher_stops_jupyter_before_the_walltime_and_exits_cleanly(monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("BATCHNOTEBOOK_STOP_AFTER", "2")
    try:
        done = run_launcher(receiver.url, sys.executable, "-c", STAND_IN, "60")
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    assert "will be stopped in 2 s" in done.stderr
    assert "Jupyter stopped before the walltime ended" in done.stderr
