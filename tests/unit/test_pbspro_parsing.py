import datetime as dt

import pytest

from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

pbspro = BACKENDS["pbspro"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-0000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("qstat",), returncode, stdout, stderr)


@pytest.mark.parametrize(
    "stdout, job_id", [("1.pbs\n", "1.pbs"), ("123.server\n", "123.server"), ("7\n", "7")]
)
def test_submit_output(stdout, job_id):
    assert pbspro.parse_submit(stdout) == job_id


def test_submit_output_without_id_is_an_error():
    with pytest.raises(ValueError):
        pbspro.parse_submit("qsub: job rejected\n")


def test_real_history_and_running_job(fixture_text):
    jobs = {
        j.job_id: j
        for j in pbspro.parse_query(fixture_text("pbspro/qstat-f-x-json.firecrest-23.06.json"))
    }
    assert set(jobs) == {"1004.pbs", "1005.pbs", "1006.pbs"}
    finished, running = jobs["1004.pbs"], jobs["1006.pbs"]
    assert finished.state is JobState.FINISHED and finished.exit_code == 0
    assert (
        finished.raw_state == "F" and finished.name == "hello_pbs" and finished.user == "fireuser"
    )
    assert finished.reason == "Job run at Thu Jun 19 at 10:36 on (pbs:ncpus=1) and finished"
    assert running.state is JobState.RUNNING and running.exec_host == "pbs"
    assert running.user == "firesrv" and running.exit_code is None


def test_queue_full_running_multicore(fixture_text):
    jobs = {
        j.name: j for j in pbspro.parse_query(fixture_text("pbspro/qstat-f-json.emulator.json"))
    }
    running, waiting = jobs[TAG + "0a"], jobs[TAG + "0b"]
    assert running.state is JobState.RUNNING and running.exec_host == "vm"  # vm/0*2
    assert waiting.state is JobState.PENDING and waiting.exec_host == ""
    assert waiting.reason == "Not Running: Server job limit has been reached."
    expected = dt.datetime(2026, 11, 23, 2, 17, 54).astimezone()
    assert waiting.expected_start == expected
    assert waiting.user == "bob"


def test_history_endings(fixture_text):
    jobs = {
        j.name: j
        for j in pbspro.parse_accounting(fixture_text("pbspro/qstat-x-f-json.emulator.json"))
    }
    walltime, failed = jobs[TAG + "0f"], jobs[TAG + "0c"]
    deleted_running, deleted_queued = jobs[TAG + "0d"], jobs[TAG + "0e"]
    assert walltime.state is JobState.FAILED and walltime.exit_code == -29
    assert failed.state is JobState.FAILED and failed.exit_code == 3
    assert deleted_running.state is JobState.CANCELLED and deleted_running.exit_code == 128 + 15
    assert deleted_running.reason.endswith("and terminated")
    assert deleted_queued.state is JobState.CANCELLED and deleted_queued.exit_code is None
    assert deleted_queued.exec_host == ""


def test_unknown_ids_next_to_known_ones_are_an_answer(fixture_text):
    stdout = fixture_text("pbspro/qstat-x-f-json.emulator.json")
    answer = result(153, stdout, fixture_text("pbspro/qstat-x-f-json.emulator.stderr"))
    assert len(list(pbspro.parse_accounting(pbspro.check(answer)))) == 4
    nothing = result(153, "", fixture_text("pbspro/qstat-unknown-and-finished.stderr"))
    assert list(pbspro.parse_accounting(pbspro.check(nothing))) == []


def test_empty_server_answers_no_jobs():
    header = '{\n    "timestamp":1,\n    "pbs_version":"22.05.11",\n    "pbs_server":"vm"\n}\n'
    assert list(pbspro.parse_query(header)) == []
    assert list(pbspro.parse_query("")) == []


@pytest.mark.parametrize(
    "stdout, stderr",
    [
        (
            "pbspro/qstat-connection-refused.baw-22.05.stdout",
            "pbspro/qstat-connection-refused.baw-22.05.stderr",
        ),
        (None, "pbspro/qstat-no-route.baw-2025.2.stderr"),
        (None, "pbspro/qstat-connection-refused.openpbs-2070.stderr"),
    ],
)
def test_server_down_is_never_an_answer(fixture_text, stdout, stderr):
    down = result(255, fixture_text(stdout) if stdout else "", fixture_text(stderr))
    with pytest.raises(SchedulerUnavailable):
        pbspro.check(down)
    with pytest.raises(SchedulerUnavailable):  # a submission is retried, not refused
        pbspro.check(down, refusal=True)


def test_refused_submission_keeps_the_servers_words(fixture_text):
    with pytest.raises(SubmissionRefused, match="qsub: Unknown queue"):
        pbspro.check(result(1, "", fixture_text("pbspro/qsub-unknown-queue.stderr")), refusal=True)


def test_commands():
    assert pbspro.argv("query", tags=["a"], job_ids=["1.vm"]) == ["qstat", "-f", "-F", "json"]
    assert pbspro.argv("accounting", job_ids=["1.vm", "2.vm"], tags=[]) == [
        "qstat",
        "-x",
        "-f",
        "-F",
        "json",
        "1.vm",
        "2.vm",
    ]
    assert pbspro.argv("accounting", job_ids=[], tags=["bnb-x"]) == [
        "qstat",
        "-x",
        "-f",
        "-F",
        "json",
    ]
    assert pbspro.argv("cancel", job_ids=["1.vm"]) == ["qdel", "1.vm"]


def test_version(fixture_text):
    assert pbspro.parse_version(fixture_text("pbspro/qstat-version.stdout")) == "22.05.11"
