import pytest

from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.schedulers.base import first_exec_host
from batchnotebook_operator.transports import CommandResult

slurm = BACKENDS["slurm"]()


def result(returncode, stdout="", stderr=""):
    return CommandResult(("sbatch",), returncode, stdout, stderr)


@pytest.mark.parametrize(
    "stdout, job_id",
    [
        ("481417\n", "481417"),
        ("481417;cluster2\n", "481417"),
        ("Submitted batch job 481417\n", "481417"),
        ("sbatch: warning: something\n12\n", "12"),
    ],
)
def test_submit_output(stdout, job_id):
    assert slurm.parse_submit(stdout) == job_id


def test_submit_output_without_id_is_an_error():
    with pytest.raises(ValueError):
        slurm.parse_submit("nothing here")


def test_queue_states_hosts_reasons(fixture_text):
    jobs = {j.job_id: j for j in slurm.parse_query(fixture_text("slurm/squeue.txt"))}
    assert jobs["41"].state is JobState.RUNNING and jobs["41"].exec_host == "vm"
    assert jobs["41"].user == "alice" and jobs["41"].reason == ""
    assert jobs["42"].state is JobState.PENDING and jobs["42"].reason == "Resources"
    assert jobs["42"].exec_host == ""
    assert jobs["42"].expected_start.isoformat().startswith("2026-11-23T03:00:00")
    assert jobs["43"].expected_start is None and jobs["43"].reason == "Priority"
    # The walltime's end, for running jobs only.
    assert jobs["41"].ends_at.isoformat().startswith("2026-11-23T02:02:03")
    assert jobs["47"].ends_at is not None
    assert jobs["42"].ends_at is None and jobs["43"].ends_at is None
    assert jobs["44"].state is JobState.FINISHED
    assert jobs["45"].state is JobState.CANCELLED
    assert jobs["46"].state is JobState.FAILED and jobs["46"].reason == "TimeLimit"
    assert jobs["46"].exec_host == "node17.cluster.example.org"
    assert jobs["47"].state is JobState.COMPLETING
    assert jobs["48"].reason == "ReqNodeNotAvail, UnavailableNodes:node[01-04]"
    # When it was submitted: a job of our tag submitted before its notebook existed is not ours.
    assert jobs["42"].submitted_at.isoformat().startswith("2026-11-23T00:01:00")


def test_accounting(fixture_text):
    jobs = {j.job_id: j for j in slurm.parse_accounting(fixture_text("slurm/sacct.txt"))}
    assert set(jobs) == {"4", "5", "6", "7"}  # steps are not jobs
    assert jobs["4"].state is JobState.FAILED and jobs["4"].exit_code == 3
    assert jobs["5"].state is JobState.CANCELLED and jobs["5"].exit_code == 128 + 15
    assert jobs["5"].reason == "CANCELLED by 1000"
    assert jobs["6"].state is JobState.FINISHED and jobs["6"].exit_code == 0
    assert jobs["7"].exec_host == ""
    assert jobs["6"].submitted_at.isoformat().startswith("2026-11-23T00:03:00")


@pytest.mark.parametrize(
    "stderr",
    [
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        "slurm_load_jobs error:  Socket timed out on send/recv operation",
        "sbatch: error: Batch job submission failed: "
        "Unable to contact slurm controller (connect failure)",
    ],
)
def test_controller_down_is_unavailable_never_refused(stderr):
    with pytest.raises(SchedulerUnavailable):
        slurm.check(result(1, stderr=stderr), refusal=True)


def test_refusal_keeps_the_schedulers_words():
    text = (
        "sbatch: error: Batch job submission failed: Invalid account or account/partition "
        "combination specified"
    )
    with pytest.raises(SubmissionRefused, match="Invalid account or account/partition"):
        slurm.check(result(1, stderr=text), refusal=True)


def test_query_errors_are_unavailable_not_gone():
    with pytest.raises(SchedulerUnavailable):
        slurm.check(result(1, stderr="slurm_load_jobs error: Invalid job id specified"))


def test_commands_are_argv_lists_and_batch_all_tags():
    tags = [f"bnb-{i}" for i in range(50)]
    argv = slurm.argv("query", tags=tags)
    assert argv[0] == "squeue" and f"--name={','.join(tags)}" in argv
    assert slurm.argv("cancel", job_ids=["7", "9"]) == ["scancel", "7", "9"]
    by_id = slurm.argv("accounting", job_ids=["4", "5"], tags=[])
    assert "--jobs=4,5" in by_id and not any(a.startswith("--name") for a in by_id)
    by_tag = slurm.argv("accounting", job_ids=[], tags=["bnb-1"])
    assert "--name=bnb-1" in by_tag and "--starttime=now-7days" in by_tag


def test_admin_overrides_replace_one_command_only():
    custom = BACKENDS["slurm"]({"query": ["/opt/site/squeue", "--name={{ tags|join(',') }}"]})
    assert custom.argv("query", tags=["a", "b"]) == ["/opt/site/squeue", "--name=a,b"]
    assert custom.argv("submit") == ["sbatch", "--parsable"]


def test_version():
    assert slurm.parse_version("slurm 22.05.8\n") == "22.05.8"
    assert slurm.parse_version("slurm-wlm 22.05.8\n") == "22.05.8"


def test_disabled_accounting_is_an_answer():
    assert slurm.has_no_accounting(result(1, stderr="Slurm accounting storage is disabled"))
    assert not slurm.has_no_accounting(result(1, stderr="Unable to contact slurm controller"))


@pytest.mark.parametrize(
    "text, host",
    [
        ("vm", "vm"),
        ("node[01-04,07]", "node01"),
        ("host1:host1", "host1"),
        ("2*host1", "host1"),
        ("2*host1:3*host2", "host1"),
        ("host/1", "host"),
        ("host/0+host/1+other/0", "host"),
        ("host/2*1", "host"),
        ("(host:ncpus=2)", "host"),
        ("all.q@node17.example.org", "node17.example.org"),
        ("slot1@node3", "node3"),
        ("", ""),
    ],
)
def test_first_exec_host_in_every_notation(text, host):
    assert first_exec_host(text) == host


def test_short_job_names_for_schedulers_that_truncate():
    class Short(type(slurm)):
        job_name_length = 15

    uid = "0b1c2d3e-0000-4000-8000-000000000001"
    assert slurm.job_name(uid) == f"bnb-{uid}"
    assert Short().job_name(uid) == "bnb0b1c2d3e0000"
