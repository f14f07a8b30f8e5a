import subprocess

import pytest

from batchnotebook_api.options import Resources
from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.render import JobRequest, render
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult

condor = BACKENDS["htcondor"]()
TAG = "bnb-0b1c2d3e-0000-4000-8000-0000000000"


def result(returncode, stdout="", stderr=""):
    return CommandResult(("condor_q",), returncode, stdout, stderr)


def test_submit_output(fixture_text):
    assert condor.parse_submit(fixture_text("htcondor/condor_submit.txt")) == "12345.0"
    with pytest.raises(ValueError):
        condor.parse_submit("Submitting job(s).\n")


def test_queue_states_hosts_reasons(fixture_text):
    jobs = {j.job_id: j for j in condor.parse_query(fixture_text("htcondor/condor_q.json"))}
    running = jobs["12345.0"]
    assert running.state is JobState.RUNNING and running.exec_host == "node01.cluster.example.org"
    assert running.name == f"{TAG}01" and running.user == "alice"
    assert jobs["12346.0"].state is JobState.PENDING and jobs["12346.0"].reason == "no match found"
    held = jobs["12347.0"]
    assert held.state is JobState.PENDING and held.raw_state == "Held" and held.exec_host == ""
    assert held.reason.startswith("Error from slot1_2@node02: Failed to execute")
    assert jobs["12348.0"].state is JobState.COMPLETING and jobs["12348.0"].exec_host == "node03"
    assert jobs["12349.0"].state is JobState.CANCELLED
    assert jobs["12349.0"].reason == "via condor_rm (by user bob)"


def test_history(fixture_text):
    jobs = {
        j.job_id: j for j in condor.parse_accounting(fixture_text("htcondor/condor_history.json"))
    }
    assert jobs["12340.0"].state is JobState.FINISHED and jobs["12340.0"].exit_code == 0
    assert jobs["12340.0"].exec_host == "node01"
    assert jobs["12341.0"].state is JobState.FAILED and jobs["12341.0"].exit_code == 3
    assert jobs["12342.0"].state is JobState.CANCELLED and jobs["12342.0"].exit_code == 128 + 15
    walltime = jobs["12343.0"]
    assert walltime.state is JobState.FAILED and "PeriodicRemove" in walltime.reason


def test_no_match_prints_nothing():
    assert list(condor.parse_query("")) == []
    assert list(condor.parse_accounting("\n")) == []


@pytest.mark.parametrize(
    "stderr",
    [
        "\n-- Failed to fetch ads from: <10.0.0.5:9618?addrs=10.0.0.5-9618&alias=submit.example"
        "&noUDP&sock=schedd_1234_abcd> : submit.example\n"
        "CEDAR:6001:Failed to connect to <10.0.0.5:9618?addrs=10.0.0.5-9618&alias=submit.example"
        "&noUDP&sock=schedd_1234_abcd>\n",
        "\nERROR: Failed to connect to local queue manager\n"
        "CEDAR:6001:Failed to connect to <10.0.0.5:9618?addrs=10.0.0.5-9618&noUDP>\n",
        "ERROR: Can't find address of local schedd\n",
    ],
)
def test_schedd_down_is_unavailable_never_refused(stderr):
    with pytest.raises(SchedulerUnavailable):
        condor.check(result(1, stderr=stderr), refusal=True)


def test_refusal_keeps_the_schedulers_words():
    text = (
        "\nERROR: Failed to commit job submission into the queue.\n"
        "ERROR: Submit requirement KnownAccountingGroup evaluated to false. "
        "Unknown accounting group nosuch\n"
    )
    with pytest.raises(SubmissionRefused, match="Unknown accounting group nosuch"):
        condor.check(result(1, stderr=text), refusal=True)


def test_commands_batch_all_tags_and_keep_the_bin_directory():
    tags = [f"bnb-{i}" for i in range(50)]
    argv = condor.argv("query", tags=tags, job_ids=[])
    assert argv[:3] == ["condor_q", "-allusers", "-json"]
    assert argv[-1] == f'stringListMember(JobBatchName, "{",".join(tags)}")'
    assert condor.argv("cancel", job_ids=["7.0", "9.0"]) == ["condor_rm", "7.0", "9.0"]
    by_id = condor.argv("accounting", job_ids=["7.0"], tags=[])
    assert by_id[0] == "condor_history" and by_id[-1] == "7.0" and "-constraint" not in by_id
    by_tag = condor.argv("accounting", job_ids=[], tags=["bnb-1"])
    assert by_tag[-2:] == ["-constraint", 'stringListMember(JobBatchName, "bnb-1")']
    submit = condor.argv("submit", bin_directory="/opt/condor/bin")
    assert submit[:2] == ["/bin/sh", "-c"] and submit[-1] == "/opt/condor/bin"
    assert condor.argv("submit", bin_directory="")[-1] == "batchnotebook-submit"


def test_version(fixture_text):
    assert condor.parse_version(fixture_text("htcondor/condor_version.txt")) == "23.4.0"


def submit_arguments(tmp_path, resources: Resources) -> list[str]:
    """Run the default template's submit mode with a condor_submit that prints its argv."""
    script = render(
        condor.default_template(),
        JobRequest(
            job_name="bnb-x",
            comment="batchnotebook:ns/nb",
            user="alice",
            resources=resources,
            environment={"BATCHNOTEBOOK_REPORT_TOKEN": "secret-token"},
            jupyter_command=["jupyterhub-singleuser"],
        ),
    )
    (tmp_path / "condor_submit").write_text(
        '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n'
    )
    (tmp_path / "condor_submit").chmod(0o755)
    (tmp_path / "job.sh").write_text(script)
    done = subprocess.run(
        ["/bin/bash", str(tmp_path / "job.sh"), "submit"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_default_template_submits_itself_without_its_secrets(tmp_path):
    argv = submit_arguments(
        tmp_path,
        Resources(cpus=2, memory="4G", gpus=1, walltime="01:00:00", account="phys", qos="high"),
    )
    assert argv[:2] == ["-batch-name", "bnb-x"] and argv[-2:] == ["-queue", "1"]
    commands = dict(a.split("=", 1) for a in argv[2:-2])
    assert commands["executable"] == str(tmp_path / "job.sh")
    assert commands["getenv"] == "false"
    assert commands["request_cpus"] == "2" and commands["request_memory"] == "4096"
    assert commands["request_gpus"] == "1" and commands["accounting_group"] == "phys"
    assert commands["output"] == "batchnotebook-$(ClusterId).log"
    assert commands["+BatchNotebook"] == '"batchnotebook:ns/nb"'
    assert commands["periodic_remove"] == (
        "JobStatus == 1 && NumJobStarts > 0 || "
        "JobStatus == 2 && time() - JobCurrentStartDate > 3600"
    )
    assert not any("secret-token" in a for a in argv)


def test_default_template_without_optional_resources(tmp_path):
    argv = submit_arguments(tmp_path, Resources(cpus=1))
    keys = {a.split("=", 1)[0] for a in argv if "=" in a}
    assert not keys & {"request_memory", "request_gpus", "accounting_group"}
    # No walltime, but still never a second run after an eviction.
    [remove] = [a for a in argv if a.startswith("periodic_remove=")]
    assert remove == "periodic_remove=JobStatus == 1 && NumJobStarts > 0"


def test_htcondor_reads_the_description_as_we_mean_it(tmp_path):
    htcondor2 = pytest.importorskip("htcondor2")  # the bindings' own submit-language parser
    argv = submit_arguments(tmp_path, Resources(cpus=2, memory="1G", walltime="00:10:00"))
    description = htcondor2.Submit(dict(a.split("=", 1) for a in argv[2:-2]))
    assert description.expand("request_cpus") == "2"
    assert description.expand("request_memory") == "1024"
    assert 'MY.BatchNotebook = "batchnotebook:ns/nb"' in str(description)
    assert description.expand("output") == "batchnotebook-1.log"  # $(ClusterId) is a macro
