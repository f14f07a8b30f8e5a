"""Grid Engine parsers over outputs captured from the real Grid Engine 8.1.9 (dev/sge.sh) and
issue trackers; see tests/fixtures/sge/README.md."""

import subprocess

import pytest

from batchnotebook_api.options import Resources
from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.render import JobRequest, render
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

sge = BACKENDS["sge"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-00000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("qsub",), returncode, stdout, stderr)


def jobs_in(fixture_text, name):
    return {job.job_id: job for job in sge.parse_query(fixture_text(f"sge/{name}"))}


def test_submit_output(fixture_text):
    assert sge.parse_submit(fixture_text("sge/qsub-terse.txt")) == "20"
    assert sge.parse_submit(fixture_text("sge/qsub-plain.txt")) == "21"
    assert sge.parse_submit("12.1-10:1\n") == "12"
    with pytest.raises(ValueError):
        sge.parse_submit("Exiting.\n")


def test_running_pending_and_held(fixture_text):
    jobs = jobs_in(fixture_text, "qstat-running-pending-held.xml")
    assert set(jobs) == {"1", "2", "3", "4", "5", "6", "7"}
    assert jobs["1"].state is JobState.RUNNING and jobs["1"].exec_host == "vm"
    assert jobs["1"].name == f"{TAG}1" and jobs["1"].user == "alice" and jobs["1"].reason == ""
    assert jobs["2"].user == "bob" and jobs["2"].raw_state == "r"
    assert jobs["3"].state is JobState.PENDING and jobs["3"].exec_host == ""
    assert jobs["3"].reason == "" and jobs["3"].expected_start is None
    assert jobs["5"].state is JobState.PENDING and jobs["5"].raw_state == "hqw"
    assert jobs["5"].reason == "hold"
    assert jobs["7"].name == "other-job"  # not ours: the client keeps only its tags


def test_error_and_suspended_jobs_still_wait(fixture_text):
    jobs = jobs_in(fixture_text, "qstat-error-held-suspended.xml")
    # Eqw stays in the queue until an admin clears it or the job is deleted: not ended, so a
    # delete still cancels it.
    assert jobs["6"].state is JobState.PENDING and jobs["6"].raw_state == "Eqw"
    assert jobs["6"].reason == "error"
    assert jobs["4"].state is JobState.PENDING and jobs["4"].reason == "suspended"
    assert jobs["4"].exec_host == ""
    assert jobs["3"].state is JobState.RUNNING and jobs["3"].exec_host == "vm"


def test_deleted_running_job_is_ending(fixture_text):
    job = jobs_in(fixture_text, "qstat-deleting.xml")["3"]
    assert job.state is JobState.COMPLETING and job.raw_state == "dr"
    assert job.reason == "deletion" and job.exec_host == "vm"


def test_transferring_job_has_its_host(fixture_text):
    job = jobs_in(fixture_text, "qstat-transferring.xml")["22"]
    assert job.state is JobState.RUNNING and job.raw_state == "t" and job.exec_host == "vm"


def test_no_jobs_and_finished_jobs(fixture_text):
    assert jobs_in(fixture_text, "qstat-empty.xml") == {}
    # A zombie has ended but says not how: left to accounting.
    assert jobs_in(fixture_text, "qstat-zombie.xml") == {}


@pytest.mark.parametrize(
    "code, state",
    [
        ("r", JobState.RUNNING),
        ("Rr", JobState.RUNNING),
        ("hr", JobState.RUNNING),
        ("t", JobState.RUNNING),
        ("qw", JobState.PENDING),
        ("hqw", JobState.PENDING),
        ("hRwq", JobState.PENDING),
        ("Eqw", JobState.PENDING),
        ("s", JobState.PENDING),
        ("S", JobState.PENDING),
        ("T", JobState.PENDING),
        ("dr", JobState.COMPLETING),
        ("dt", JobState.COMPLETING),
        ("ds", JobState.COMPLETING),
        ("?", JobState.UNKNOWN),
    ],
)
def test_state_letters(code, state):
    xml = (
        "<job_info><queue_info><job_list><JB_job_number>9</JB_job_number>"
        f"<JB_name>x</JB_name><state>{code}</state><queue_name>all.q@node1</queue_name>"
        "</job_list></queue_info></job_info>"
    )
    assert next(iter(sge.parse_query(xml))).state is state


def test_cut_short_xml_is_no_answer_not_no_jobs(fixture_text):
    text = fixture_text("sge/qstat-running-pending-held.xml")
    with pytest.raises(SchedulerUnavailable, match="no valid XML"):
        list(sge.parse_query(text[: len(text) // 2]))


def test_accounting(fixture_text):
    jobs = {j.job_id: j for j in sge.parse_accounting(fixture_text("sge/qacct-several.txt"))}
    assert set(jobs) == {"1", "2", "3", "6", "9", "10", "11", "12", "21", "22", "24"}
    deleted = jobs["2"]
    assert deleted.state is JobState.CANCELLED and deleted.exit_code == 137
    assert deleted.reason == "failed 100 : assumedly after job" and deleted.user == "bob"
    assert deleted.name == f"{TAG}2" and deleted.exec_host == "vm"
    assert jobs["9"].state is JobState.FAILED and jobs["9"].exit_code == 137
    assert jobs["9"].reason == "failed 37 : qmaster enforced h_rt, h_cpu, or h_vmem limit"
    assert jobs["10"].state is JobState.FAILED and jobs["10"].exit_code == 3
    assert jobs["10"].raw_state == "exit_status 3" and jobs["10"].reason == ""
    assert jobs["11"].state is JobState.FINISHED and jobs["11"].exit_code == 0
    assert jobs["6"].state is JobState.FAILED
    assert jobs["6"].reason == "failed 26 : opening input/output file"


@pytest.mark.parametrize(
    "name",
    [
        "qstat-qmaster-down.txt",
        "qsub-qmaster-down.txt",
        "qdel-qmaster-down.txt",
        "qsub-no-route-to-qmaster.txt",
        "qhost-gdi-timeout.txt",
        "qhost-qmaster-crashed.txt",
        "qsub-no-qmaster-name.txt",
    ],
)
def test_qmaster_unreachable_is_unavailable_never_refused(fixture_text, name):
    stderr = fixture_text(f"sge/errors/{name}")
    assert sge.is_unavailable(stderr)
    with pytest.raises(SchedulerUnavailable):
        sge.check(result(1, stderr=stderr), refusal=True)


@pytest.mark.parametrize(
    "name, words",
    [
        ("qsub-as-root.txt", "your user id 0 is lower than minimum user id 1000"),
        ("qsub-unknown-project.txt", 'the requested project "nosuch" does not exist'),
        ("qsub-unknown-queue.txt", 'job requests unknown queue "nosuch.q"'),
        ("qsub-unknown-resource.txt", 'unknown resource "gpu"'),
        ("qsub-unknown-pe.txt", 'parallel environment "nosuch" does not exist'),
        ("qsub-no-suitable-queues.txt", "no suitable queues"),
        ("qsub-bad-walltime.txt", 'attribute "h_rt" is not a time value'),
    ],
)
def test_refusal_keeps_grid_engines_words(fixture_text, name, words):
    with pytest.raises(SubmissionRefused, match=words):
        sge.check(result(1, stderr=fixture_text(f"sge/errors/{name}")), refusal=True)


@pytest.mark.parametrize(
    "name", ["qdel-unknown-job.txt", "qdel-not-owner.txt", "qdel-registered-and-unknown.txt"]
)
def test_failed_cancel_is_not_read_as_gone(fixture_text, name):
    # The cancel handler retries and asks the queue again instead of trusting qdel's exit code.
    with pytest.raises(SchedulerUnavailable):
        sge.check(result(1, stderr=fixture_text(f"sge/errors/{name}")))


@pytest.mark.parametrize("name", ["qacct-unknown-id.txt", "qacct-unknown-name.txt"])
def test_accounting_that_knows_nothing_is_an_answer(fixture_text, name):
    assert sge.has_no_accounting(result(1, stderr=fixture_text(f"sge/errors/{name}")))


def test_no_accounting_file_yet_is_an_answer(fixture_text):
    # A freshly set up cluster where no job has ended: until then every submission looks its tag
    # up in accounting first, and must not wait for the scheduler forever.
    stderr = fixture_text("sge/errors/qacct-no-accounting-file.txt")
    assert sge.has_no_accounting(result(1, "no jobs running since startup\n", stderr))


def test_unreachable_qmaster_is_not_empty_accounting(fixture_text):
    stderr = fixture_text("sge/errors/qstat-qmaster-down.txt")
    assert not sge.has_no_accounting(result(1, stderr=stderr))


def test_one_query_for_every_job_and_accounting_in_one_call():
    tags = [f"bnb-{i}" for i in range(50)]
    assert sge.argv("query", tags=tags, job_ids=[str(i) for i in range(50)]) == [
        "qstat",
        "-xml",
        "-u",
        "*",
    ]
    assert sge.argv("accounting", tags=["bnb-7"], job_ids=[]) == ["qacct", "-j", "bnb-7"]
    assert sge.argv("accounting", tags=[], job_ids=["42"]) == ["qacct", "-j", "42"]
    assert sge.argv("accounting", tags=[], job_ids=["4", "5"]) == ["qacct", "-j", "bnb-*"]
    assert sge.argv("cancel", job_ids=["7", "9"]) == ["qdel", "7", "9"]
    assert sge.argv("submit") == ["qsub", "-terse"]


def test_version(fixture_text):
    assert sge.parse_version(fixture_text("sge/qstat-help.txt")) == "SGE 8.1.9"


def request(resources: Resources, output: str = "batchnotebook-%j.log") -> JobRequest:
    return JobRequest(
        job_name="bnb-uid",
        comment="batchnotebook:ns/nb",
        user="alice",
        resources=resources,
        environment={"JUPYTERHUB_API_TOKEN": "secret-token"},
        jupyter_command=["/opt/jobenv/bin/jupyterhub-singleuser"],
        python="/opt/jobenv/bin/python",
        output=output,
    )


def directives(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#$")]


def test_default_template():
    script = render(
        sge.default_template(),
        request(
            Resources(
                cpus=2,
                memory="1G",
                walltime="1-00:00:00",
                partition="all.q",
                account="research",
                qos="high",
                gpus=1,
            )
        ),
    )
    assert directives(script) == [
        "#$ -N bnb-uid",
        "#$ -o 'batchnotebook-$JOB_ID.log'",
        "#$ -j y",
        "#$ -S /bin/bash",
        "#$ -r n",
        "#$ -w e",
        "#$ -pe smp 2",
        "#$ -l h_vmem=512M",  # per slot: 2 slots of 512M
        "#$ -l h_rt=86400",
        "#$ -q all.q",
        "#$ -P research",
        "#$ -A research",
        "#$ -l qos=high",
        "#$ -l gpu=1",
    ]
    assert script.rstrip().endswith("BATCHNOTEBOOK_LAUNCHER")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell


def test_template_leaves_out_what_is_not_asked():
    script = render(sge.default_template(), request(Resources(cpus=3, memory="1000M")))
    assert directives(script)[6:] == ["#$ -pe smp 3", "#$ -l h_vmem=334M"]  # rounded up


def test_output_paths_without_placeholder_are_kept():
    script = render(sge.default_template(), request(Resources(), output="logs/notebook.log"))
    assert "#$ -o logs/notebook.log" in directives(script)
