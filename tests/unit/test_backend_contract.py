"""The contract every backend keeps, shown on its own captured outputs (tests/fixtures/<backend>/):
a submit's output gives the job id; the scheduler not answering is SchedulerUnavailable, never an
answer (nor a refusal); "no such job" from the status query is an empty answer, never an error.

Each answer goes through the calls the command-line client makes: check, then the parser."""

from dataclasses import dataclass

import pytest

from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult


@dataclass(frozen=True)
class Fixture:
    """A file in the backend's fixture folder."""

    name: str


@dataclass(frozen=True)
class Answer:
    """A command's exit status and output: each output a fixture, or literal text where the
    folder has no capture of it."""

    returncode: int
    stdout: Fixture | str = ""
    stderr: Fixture | str = ""


@dataclass(frozen=True)
class Contract:
    submit: tuple[Answer, str]  # the submit command's answer, the job id in it
    unavailable: tuple[Answer, ...]  # the status query's answers while the scheduler is away
    no_such_job: tuple[Answer, ...]  # its answers when it knows none of the jobs asked about


CONTRACTS = {
    # No Slurm capture of these: the texts are those of test_slurm_parsing.py; squeue
    # --noheader prints nothing when no job has one of the names asked for.
    "slurm": Contract(
        submit=(Answer(0, "481417\n"), "481417"),
        unavailable=(
            Answer(1, stderr="slurm_load_jobs error: Unable to contact slurm controller"),
        ),
        no_such_job=(Answer(0, ""),),
    ),
    "lsf": Contract(
        submit=(Answer(0, Fixture("bsub.txt")), "1815"),
        unavailable=(Answer(255, stderr=Fixture("bjobs-lsf-down.emulator.stderr")),),
        no_such_job=(
            Answer(255, stderr=Fixture("bjobs-no-match.emulator.stderr")),
            Answer(0, Fixture("bjobs-json-not-found.json")),
        ),
    ),
    # The emulator's condor_q prints nothing when no job matches.
    "htcondor": Contract(
        submit=(Answer(0, Fixture("condor_submit.txt")), "12345.0"),
        unavailable=(Answer(1, stderr=Fixture("condor_q-schedd-down.emulator.stderr")),),
        no_such_job=(Answer(0, ""),),
    ),
    "sge": Contract(
        submit=(Answer(0, Fixture("qsub-terse.txt")), "20"),
        unavailable=(Answer(1, stderr=Fixture("errors/qstat-qmaster-down.txt")),),
        no_such_job=(Answer(0, Fixture("qstat-empty.xml")),),
    ),
    "pbspro": Contract(
        submit=(Answer(0, Fixture("qsub.firecrest.stdout")), "1.pbs"),
        unavailable=(
            Answer(
                255,
                Fixture("qstat-connection-refused.baw-22.05.stdout"),
                Fixture("qstat-connection-refused.baw-22.05.stderr"),
            ),
        ),
        no_such_job=(Answer(153, stderr=Fixture("qstat-unknown-and-finished.stderr")),),
    ),
    "torque": Contract(
        submit=(Answer(0, Fixture("qsub.stdout")), "669540.cluster-head"),
        unavailable=(Answer(111, stderr=Fixture("qstat-server-down.cbio-178.stderr")),),
        no_such_job=(Answer(153, stderr=Fixture("qstat-unknown.bpipe.stderr")),),
    ),
    "moab": Contract(
        submit=(Answer(0, Fixture("msub.nemo-tardis.stdout")), "4761849"),
        unavailable=(Answer(1, stderr=Fixture("showq-connection-refused.cbio-69.stderr")),),
        no_such_job=(Answer(0, Fixture("showq-xml-empty.emulator.xml")),),
    ),
}


def said(backend: str, command: str, answer: Answer, fixture_text) -> CommandResult:
    def text(output: Fixture | str) -> str:
        return fixture_text(f"{backend}/{output.name}") if isinstance(output, Fixture) else output

    argv = tuple(BACKENDS[backend].commands[command][:1])
    return CommandResult(argv, answer.returncode, text(answer.stdout), text(answer.stderr))


def cases(situation: str) -> list:
    """One case per backend in BACKENDS (a backend without a contract fails here) and answer."""
    chosen = []
    for backend in sorted(BACKENDS):
        answers = getattr(CONTRACTS[backend], situation)
        for number, answer in enumerate(answers):
            chosen.append(pytest.param(backend, answer, id=f"{backend}-{number}"))
    return chosen


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_submit_gives_the_job_id(backend, fixture_text):
    answer, job_id = CONTRACTS[backend].submit
    scheduler = BACKENDS[backend]()
    stdout = scheduler.check(said(backend, "submit", answer, fixture_text), refusal=True)
    assert scheduler.parse_submit(stdout) == job_id


@pytest.mark.parametrize("backend, answer", cases("unavailable"))
def test_scheduler_away_is_unavailable(backend, answer, fixture_text):
    scheduler = BACKENDS[backend]()
    away = said(backend, "query", answer, fixture_text)
    with pytest.raises(SchedulerUnavailable):
        scheduler.check(away)
    with pytest.raises(SchedulerUnavailable):  # a submission is retried, not refused
        scheduler.check(away, refusal=True)


@pytest.mark.parametrize("backend, answer", cases("no_such_job"))
def test_no_such_job_is_an_empty_answer(backend, answer, fixture_text):
    scheduler = BACKENDS[backend]()
    stdout = scheduler.check(said(backend, "query", answer, fixture_text))
    assert list(scheduler.parse_query(stdout)) == []
