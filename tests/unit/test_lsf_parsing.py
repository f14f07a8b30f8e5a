import pytest

from batchnotebook_api.options import Resources
from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.render import JobRequest, render
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

lsf = BACKENDS["lsf"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-00000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("bjobs",), returncode, stdout, stderr)


def test_submit_output(fixture_text):
    assert lsf.parse_submit(fixture_text("lsf/bsub.txt")) == "1815"
    assert lsf.parse_submit("Job <77> is submitted to queue <short>.\n") == "77"
    with pytest.raises(ValueError):
        lsf.parse_submit("Cannot connect to LSF. Please wait ...\n")


def test_queue_states_hosts_reasons(fixture_text):
    jobs = {j.job_id: j for j in lsf.parse_query(fixture_text("lsf/bjobs-json.json"))}
    assert jobs["1815"].state is JobState.RUNNING and jobs["1815"].exec_host == "node01"
    assert jobs["1815"].name == f"{TAG}1" and jobs["1815"].user == "alice"
    assert jobs["1816"].state is JobState.PENDING and jobs["1816"].exec_host == ""
    assert jobs["1816"].reason == "New job is waiting for scheduling"
    assert jobs["1817"].state is JobState.CANCELLED and jobs["1817"].exec_host == "node02"
    assert jobs["1817"].reason == "TERM_OWNER: job killed by owner"
    assert jobs["1817"].exit_code == 130
    assert jobs["1818"].state is JobState.FAILED and jobs["1818"].exit_code == 140
    assert jobs["1818"].exec_host == "node03.cluster.example.org"
    assert jobs["1818"].reason.startswith("TERM_RUNLIMIT")
    assert jobs["1819"].state is JobState.FINISHED and jobs["1819"].exit_code is None
    assert jobs["1820"].state is JobState.PENDING and jobs["1820"].raw_state == "PSUSP"
    assert jobs["1820"].reason == (
        "The job was suspended by the user while pending; Job dependency condition not satisfied"
    )


def test_unknown_ids_are_skipped(fixture_text):
    assert list(lsf.parse_query(fixture_text("lsf/bjobs-json-not-found.json"))) == []
    assert list(lsf.parse_query("")) == []


def test_history_of_ended_jobs(fixture_text):
    jobs = {j.job_id: j for j in lsf.parse_accounting(fixture_text("lsf/bhist-l.txt"))}
    assert set(jobs) == {"1817", "1818", "1819"}  # 1815 still runs: the queue speaks for it
    assert jobs["1819"].state is JobState.FINISHED and jobs["1819"].exit_code == 0
    assert jobs["1819"].name == f"{TAG}5" and jobs["1819"].user == "bob"
    assert jobs["1819"].exec_host == "node04"
    assert jobs["1818"].state is JobState.FAILED and jobs["1818"].exit_code == 140
    assert jobs["1818"].reason == "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
    assert jobs["1818"].exec_host == "node03.cluster.example.org"  # joined across the wrap
    assert jobs["1817"].state is JobState.CANCELLED and jobs["1817"].exit_code == 128 + 9


@pytest.mark.parametrize(
    "stderr",
    [
        "Cannot connect to LSF. Please wait ...\nCannot connect to LSF. Please wait ...\n",
        "LSF is down. Please wait ...\n",
        "batch system daemon not responding ... still trying\n",
        "Failed in an LSF library call: Slave LIM configuration is not ready yet. Please wait...",
    ],
)
def test_lsf_down_is_unavailable_never_refused_nor_empty(stderr):
    with pytest.raises(SchedulerUnavailable):
        lsf.check(result(255, stderr=stderr), refusal=True)
    with pytest.raises(SchedulerUnavailable):
        lsf.check(result(255, stderr=stderr + "No job found\n"))


def test_refusal_keeps_the_schedulers_words():
    text = "nosuch: No such queue. Job not submitted.\n"
    with pytest.raises(SubmissionRefused, match=r"nosuch: No such queue\. Job not submitted\."):
        lsf.check(result(255, stderr=text), refusal=True)


@pytest.mark.parametrize(
    "stderr", ["No job found\n", "No unfinished job found\n", "Job <bnb-*> is not found\n"]
)
def test_nothing_found_is_an_empty_answer(stderr):
    assert lsf.check(result(255, stderr=stderr)) == ""


def test_no_history_is_an_answer():
    assert lsf.has_no_accounting(result(255, stderr="No matching job found\n"))
    assert not lsf.has_no_accounting(result(255, stderr="LSF is down. Please wait ...\n"))


def test_commands_are_argv_lists_and_one_query_covers_all_tags():
    tags = [f"bnb-{i}" for i in range(50)]
    argv = lsf.argv("query", tags=tags, job_ids=["1", "2"])
    assert argv[:5] == ["bjobs", "-a", "-u", "all", "-J"] and "bnb-*" in argv
    assert argv[-1] == "-json"
    assert lsf.argv("cancel", job_ids=["7", "9"]) == ["bkill", "7", "9"]
    assert lsf.argv("accounting", job_ids=["4", "5"], tags=[]) == [
        "bhist", "-a", "-l", "-u", "all", "4", "5"
    ]  # fmt: skip
    assert lsf.argv("accounting", job_ids=[], tags=["bnb-1"])[-2:] == ["-J", "bnb-1"]
    assert lsf.argv("submit") == ["bsub"]


def test_version(fixture_text):
    assert lsf.parse_version(fixture_text("lsf/lsid.txt")) == "10.1.0.13"


def test_default_template_directives():
    script = render(
        lsf.default_template(),
        JobRequest(
            job_name="bnb-x",
            comment="batchnotebook:ns/nb",
            user="alice",
            resources=Resources(
                cpus=2, memory="4G", gpus=1, walltime="01:30:20", partition="short", account="phys"
            ),
            environment={"BATCHNOTEBOOK_REPORT_TOKEN": "secret"},
            jupyter_command=["jupyterhub-singleuser"],
        ),
    )
    for line in (
        "#BSUB -J bnb-x",
        "#BSUB -o batchnotebook-%J.log",
        "#BSUB -n 2",
        '#BSUB -R "rusage[mem=4096MB]"',
        "#BSUB -M 4096MB",
        "#BSUB -W 1:31",  # [HH:]MM, rounded up
        "#BSUB -q short",
        "#BSUB -P phys",
        '#BSUB -gpu "num=1"',
    ):
        assert f"\n{line}\n" in script
    assert script.rstrip().endswith("BATCHNOTEBOOK_LAUNCHER")
