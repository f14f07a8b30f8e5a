import datetime as dt

import pytest

from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

moab = BACKENDS["moab"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-0000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("showq",), returncode, stdout, stderr)


def test_submit_output(fixture_text):
    assert moab.parse_submit(fixture_text("moab/msub.nemo-tardis.stdout")) == "4761849"
    assert moab.parse_submit("\nMoab.12\n") == "Moab.12"
    with pytest.raises(ValueError):
        moab.parse_submit("\n\n")


def test_real_site_queue(fixture_text):
    jobs = {j.job_id: j for j in moab.parse_query(fixture_text("moab/showq-xml.nemo-tardis.xml"))}
    running, idle = jobs["5096381"], jobs["4761849"]
    assert running.state is JobState.RUNNING and running.exec_host == "n4545.nemo.privat"
    assert running.name == "startVM.py" and running.user == "ka_qb1555"
    assert idle.state is JobState.PENDING and idle.reason == "eligible"
    assert idle.expected_start is None  # StartTime="0": no reservation yet


def test_real_site_completed(fixture_text):
    jobs = {
        j.job_id: j for j in moab.parse_accounting(fixture_text("moab/showq-c-xml.nemo-tardis.xml"))
    }
    assert jobs["5087810"].state is JobState.FINISHED and jobs["5087810"].exit_code == 0
    assert jobs["7624201"].state is JobState.CANCELLED and jobs["7624201"].exit_code is None


def test_queue_full_with_reservation(fixture_text):
    jobs = {j.name: j for j in moab.parse_query(fixture_text("moab/showq-xml.emulator.xml"))}
    assert jobs[TAG + "0a"].state is JobState.RUNNING and jobs[TAG + "0a"].exec_host == "vm"
    waiting = jobs[TAG + "0b"]
    assert waiting.state is JobState.PENDING and waiting.reason == "eligible"
    assert waiting.expected_start == dt.datetime.fromtimestamp(1795400257, dt.UTC)


def test_endings(fixture_text):
    jobs = {j.name: j for j in moab.parse_accounting(fixture_text("moab/showq-c-xml.emulator.xml"))}
    assert jobs[TAG + "0f"].state is JobState.FAILED and jobs[TAG + "0f"].exit_code == -11
    assert jobs[TAG + "0c"].state is JobState.FAILED and jobs[TAG + "0c"].exit_code == 3
    assert jobs[TAG + "0d"].state is JobState.CANCELLED
    assert jobs[TAG + "0e"].state is JobState.CANCELLED and jobs[TAG + "0e"].expected_start is None


def test_blocked_jobs_say_why():
    text = (
        '<Data><Object>queue</Object><queue count="1" option="blocked">'
        '<job JobID="9" JobName="x" State="UserHold" User="alice"></job></queue></Data>'
    )
    (job,) = moab.parse_query(text)
    assert job.state is JobState.PENDING and job.reason == "blocked: UserHold"


@pytest.mark.parametrize(
    "stderr",
    [
        "moab/showq-connection-refused.cbio-69.stderr",
        "moab/showstart-timeout.cbio-35.stderr",
        "moab/client-timeout.nemo-tardis.stderr",
    ],
)
def test_server_down_is_never_an_answer(fixture_text, stderr):
    down = result(1, "", fixture_text(stderr))
    with pytest.raises(SchedulerUnavailable):
        moab.check(down)
    with pytest.raises(SchedulerUnavailable):
        moab.check(down, refusal=True)


def test_refused_submission_keeps_moabs_words():
    refused = result(1, "", "ERROR:    cannot submit job - cannot locate requested class 'x'\n")
    with pytest.raises(SubmissionRefused, match="cannot locate requested class 'x'"):
        moab.check(refused, refusal=True)


def test_commands():
    assert moab.argv("query", tags=["a"], job_ids=["1"]) == ["showq", "--xml"]
    assert moab.argv("accounting", job_ids=["1"], tags=[]) == ["showq", "-c", "--xml"]
    assert moab.argv("cancel", job_ids=["1", "2"]) == ["mjobctl", "-c", "1", "2"]


def test_version():
    assert moab.parse_version("Version: moab client 9.1.3 (revision 5)\n") == "9.1.3 (revision 5)"
