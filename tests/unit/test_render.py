import shlex
import subprocess

import pytest

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources
from batchnotebook_operator.render import JobRequest, render
from batchnotebook_operator.schedulers import BACKENDS

TEMPLATE = BACKENDS["slurm"].default_template()


def request(**overrides):
    values = dict(
        job_name="bnb-uid",
        comment="batchnotebook:ns/nb",
        user="alice",
        resources=Resources(
            cpus=2, memory="4G", walltime="01:00:00", partition="debug", account="research"
        ),
        environment={  # never a token: those stay out of scripts (test_secret_environment.py)
            "BATCHNOTEBOOK_STOP_AFTER": "3480",
            "BATCHNOTEBOOK_REPORT_URL": "http://x",
        },
        jupyter_command=["/opt/jobenv/bin/jupyterhub-singleuser"],
        python="/opt/jobenv/bin/python",
    )
    values.update(overrides)
    return JobRequest(**values)


def directives(script):
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_default_slurm_script():
    script = render(TEMPLATE, request())
    assert directives(script) == [
        "#SBATCH --job-name=bnb-uid",
        "#SBATCH --comment=batchnotebook:ns/nb",
        "#SBATCH --output=batchnotebook-%j.log",
        "#SBATCH --ntasks=1",
        "#SBATCH --no-requeue",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --time=01:00:00",
        "#SBATCH --partition=debug",
        "#SBATCH --account=research",
    ]
    assert "export BATCHNOTEBOOK_STOP_AFTER=3480" in script
    assert (
        "exec /opt/jobenv/bin/python - /opt/jobenv/bin/jupyterhub-singleuser "
        "<<'BATCHNOTEBOOK_LAUNCHER'" in script
    )
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell


@pytest.mark.parametrize(
    ("walltime", "time"),
    [("12:00", "12:00:00"), ("1-00:00:00", "24:00:00"), ("00:30:00", "00:30:00")],
)
def test_the_walltime_checked_is_the_walltime_asked(walltime, time):
    # The profile reads "12:00" as twelve hours; sbatch would read it as twelve minutes.
    script = render(TEMPLATE, request(resources=Resources(cpus=1, walltime=walltime)))
    assert f"#SBATCH --time={time}" in directives(script)


def test_optional_directives_only_when_set():
    script = render(TEMPLATE, request(resources=Resources(cpus=1, gpus=2, qos="high")))
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH --qos=high" in script
    assert "--mem" not in script and "--time" not in script and "--partition" not in script


def test_every_value_is_quoted():
    hostile = "x'; touch /tmp/pwned; echo '\n#SBATCH --uid=0 $(id) `id`"
    script = render(
        "#!/bin/bash\necho {{ comment }} {{ account }}\n",
        request(comment=hostile, resources=Resources(account="a b")),
    )
    body = script.split("\n", 1)[1]
    assert shlex.split(body) == ["echo", hostile, "a b"]
    out = subprocess.run(["bash"], input=script, text=True, capture_output=True, check=True)
    assert out.stdout == hostile + " a b\n"


def test_environment_values_survive_quoting_and_names_are_checked():
    value = 'tok\'en with $HOME and "quotes"\nand a newline'
    script = render(
        '#!/bin/bash\n{{ environment }}\necho "$V"\n', request(environment={"V": value})
    )
    out = subprocess.run(["bash"], input=script, text=True, capture_output=True, check=True)
    assert out.stdout == value + "\n"
    with pytest.raises(InvalidOptions, match="environment variable"):
        render(TEMPLATE, request(environment={"BAD NAME; id": "x"}))


def test_a_broken_admin_template_is_a_clear_error():
    with pytest.raises(InvalidOptions, match="does not render"):
        render("{{ nonexistent_variable }}", request())
    with pytest.raises(InvalidOptions, match="does not render"):
        render("{% if %}", request())


def test_template_sandbox_blocks_python_internals():
    with pytest.raises(Exception):  # noqa: B017 - any sandbox refusal will do
        render("{{ comment.__class__.__mro__[1].__subclasses__() }}", request())


# What each scheduler's default template says so that a notebook never runs twice: its
# environment file is gone after the first run, and the hub would not know of a second server.
NO_RERUN = {
    "slurm": "\n#SBATCH --no-requeue\n",
    "pbspro": "\n#PBS -r n\n",
    "torque": "\n#PBS -r n\n",
    "sge": "\n#$ -r n\n",
    "lsf": "\n#BSUB -rn\n",
    "moab": "\n#MSUB -r n\n",
    # An evicted job goes back to Idle after it started: removed then, never matched again.
    "htcondor": "'periodic_remove=JobStatus == 1 && NumJobStarts > 0",
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_default_template_asks_for_no_rerun(backend):
    script = render(BACKENDS[backend].default_template(), request())
    assert NO_RERUN[backend] in script
