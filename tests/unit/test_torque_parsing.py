import pytest

from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

torque = BACKENDS["torque"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-0000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("qstat",), returncode, stdout, stderr)


@pytest.mark.parametrize(
    "stdout, job_id",
    [("669540.cluster-head\n", "669540.cluster-head"), ("12.vm\n", "12.vm")],
)
def test_submit_output(stdout, job_id):
    assert torque.parse_submit(stdout) == job_id


def test_real_site_output(fixture_text):
    jobs = {
        j.job_id: j for j in torque.parse_query(fixture_text("torque/qstat-x.stanford-fyrd.xml"))
    }
    running = jobs["665199.superserver.stanford.edu"]
    queued = jobs["667999.superserver.stanford.edu"]
    completed = jobs["673174.superserver.stanford.edu"]
    assert running.state is JobState.RUNNING and running.exec_host == "node01"
    assert running.user == "johnfox" and running.name == "int_tmux"
    assert queued.state is JobState.PENDING and queued.exec_host == ""
    assert completed.state is JobState.FINISHED and completed.exit_code == 0
    assert completed.raw_state == "C"


def test_xml_declaration_and_core_ranges(fixture_text):
    (job,) = torque.parse_query(fixture_text("torque/qstat-x.c0-vasp.xml"))
    assert job.job_id == "72.c0" and job.exec_host == "c0" and job.state is JobState.RUNNING


def test_queue_full_and_endings(fixture_text):
    jobs = {j.name: j for j in torque.parse_query(fixture_text("torque/qstat-x.emulator.xml"))}
    assert jobs[TAG + "0a"].state is JobState.RUNNING and jobs[TAG + "0a"].exec_host == "vm"
    waiting = jobs[TAG + "0b"]
    assert waiting.state is JobState.PENDING
    assert waiting.reason == "Not Running: Server job limit has been reached."
    assert jobs[TAG + "0f"].state is JobState.FAILED and jobs[TAG + "0f"].exit_code == -11
    assert jobs[TAG + "0c"].state is JobState.FAILED and jobs[TAG + "0c"].exit_code == 3
    assert jobs[TAG + "0d"].state is JobState.CANCELLED and jobs[TAG + "0d"].exit_code == 143
    assert jobs[TAG + "0e"].state is JobState.CANCELLED and jobs[TAG + "0e"].exit_code is None


def test_one_document_per_job_id_and_none_at_all():
    one = "<Data><Job><Job_Id>1.vm</Job_Id><job_state>R</job_state></Job></Data>"
    two = "<Data><Job><Job_Id>2.vm</Job_Id><job_state>Q</job_state></Job></Data>"
    text = f'<?xml version="1.0"?>\n{one}\n<?xml version="1.0"?>\n{two}\n'
    assert [j.job_id for j in torque.parse_accounting(text)] == ["1.vm", "2.vm"]
    assert list(torque.parse_query("")) == []
    assert list(torque.parse_query('<?xml version="1.0"?>\n<Data></Data>\n')) == []


def test_expired_ids_are_an_answer(fixture_text):
    expired = result(153, "", fixture_text("torque/qstat-unknown.bpipe.stderr"))
    assert list(torque.parse_accounting(torque.check(expired))) == []


@pytest.mark.parametrize(
    "stderr",
    [
        "torque/qstat-server-down.cbio-178.stderr",
        "torque/qstat-server-down.cbio-28.stderr",
        "torque/qstat-no-trqauthd.stderr",
    ],
)
def test_server_down_is_never_an_answer(fixture_text, stderr):
    down = result(111, "", fixture_text(stderr))
    with pytest.raises(SchedulerUnavailable):
        torque.check(down)
    with pytest.raises(SchedulerUnavailable):
        torque.check(down, refusal=True)


def test_refused_submission_keeps_the_servers_words():
    refused = result(1, "", "qsub: submit error (Unknown queue MSG=requested queue not found)\n")
    with pytest.raises(SubmissionRefused, match="Unknown queue MSG=requested queue not found"):
        torque.check(refused, refusal=True)


def test_commands():
    assert torque.argv("query", tags=["a"], job_ids=["1.vm"]) == ["qstat", "-x"]
    assert torque.argv("accounting", job_ids=["1.vm"], tags=[]) == ["qstat", "-x", "1.vm"]
    assert torque.argv("cancel", job_ids=["1.vm", "2.vm"]) == ["qdel", "1.vm", "2.vm"]


def test_version(fixture_text):
    assert torque.parse_version(fixture_text("torque/qstat-version.stdout")) == "6.1.3"


@pytest.mark.parametrize(
    "status, state",
    [
        (0, JobState.FINISHED),
        (3, JobState.FAILED),
        (-11, JobState.FAILED),  # walltime
        (271, JobState.CANCELLED),  # qdel's SIGTERM, as PBS encodes a signal
        (143, JobState.CANCELLED),  # the same SIGTERM, as the job's launcher reports it
        (265, JobState.CANCELLED),  # qdel's SIGKILL after kill_delay
        (137, JobState.FAILED),  # a bare SIGKILL: the OOM killer
    ],
)
def test_how_a_completed_job_ended(status, state):
    job_xml = f"<Job_Id>1.vm</Job_Id><job_state>C</job_state><exit_status>{status}</exit_status>"
    (job,) = torque.parse_query(f"<Data><Job>{job_xml}</Job></Data>")
    assert job.state is state
