"""Golden tests on what the real Slurm 24.11.5 said (tests/fixtures/slurm-24.11/ and
slurmrest-24.11/, captured from dev/trixie.sh), beside the 22.05 ones: the command-line parsers
and slurmrestd's v0.0.40 to v0.0.42 answers, errors included, and the client speaking v0.0.42 to a
stand-in that serves them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from aiohttp import web
from test_slurmrest import KEY, Kube, rest_spec

from batchnotebook_operator.clients.slurmrest.answer import Answer
from batchnotebook_operator.clients.slurmrest.client import SlurmRestClient
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.model import JobState
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.schedulers.slurm_json import (
    cancel_refusals,
    parse_accounting,
    parse_job_states,
    parse_jobs,
    parse_partition_loads,
    parse_queued_jobs,
)

CLI = Path(__file__).parents[1] / "fixtures" / "slurm-24.11"
REST = Path(__file__).parents[1] / "fixtures" / "slurmrest-24.11"
VERSIONS = ("v0.0.40", "v0.0.41", "v0.0.42")
slurm = BACKENDS["slurm"]()


def cli(name: str) -> str:
    return (CLI / name).read_text()


def rest(name: str) -> tuple[int, str]:
    status = int(name.rsplit("-http", 1)[1].split(".")[0])
    return status, (REST / name).read_text()


def answer(name: str) -> Answer:
    status, text = rest(name)
    return Answer.read(f"GET {name}", status, text.encode())


# ---------------------------------------------------------------------------------------------
# The command line


def test_squeue_of_24_11():
    jobs = {j.name.removeprefix("bnb-cap-"): j for j in slurm.parse_query(cli("squeue-query.out"))}
    assert (jobs["running"].state, jobs["running"].exec_host) == (JobState.RUNNING, "tx-c1")
    assert jobs["resources"].state is JobState.PENDING
    assert (jobs["resources"].reason, jobs["priority"].reason) == ("Resources", "Priority")
    assert jobs["held"].reason == "JobHeldUser" and jobs["held"].exec_host == ""
    assert jobs["begin"].expected_start == dt.datetime(2026, 12, 3, 1, 8, 14, tzinfo=dt.UTC)
    assert jobs["completed"].state is JobState.FINISHED
    assert jobs["failed"].state is JobState.FAILED and jobs["cancelled"].user == "bob"


def test_sacct_of_24_11():
    jobs = {j.job_id: j for j in slurm.parse_accounting(cli("sacct-jobs.out"))}
    assert (jobs["7"].state, jobs["7"].exit_code) == (JobState.FINISHED, 0)
    assert (jobs["8"].state, jobs["8"].exit_code) == (JobState.FAILED, 3)
    assert jobs["9"].exit_code == 137  # 0:9, killed
    assert jobs["10"].state is JobState.CANCELLED and jobs["10"].reason == "CANCELLED by 1002"
    # A job on two nodes: Jupyter's host is the first.
    assert jobs["11"].exec_host == "tx-c1"
    assert jobs["12"].state is JobState.PENDING and jobs["12"].exec_host == ""
    assert list(slurm.parse_accounting(cli("sacct-unknown-job.out"))) == []


def test_sinfo_and_the_queue_of_24_11():
    loads = {p.name: p for p in slurm.parse_partitions(cli("sinfo-nodes.out"))}
    assert (loads["debug"].cpus_total, loads["debug"].cpus_idle) == (16, 4)
    queued = slurm.parse_all_jobs(cli("squeue-all-jobs.out"))
    # Highest priority first (24.11 says 1, and 0 for the held 14), then the oldest.
    assert [j.job_id for j in queued if j.pending] == ["12", "13", "15", "16", "17", "14"]
    assert slurm.parse_version(cli("sinfo-version.out")) == "24.11.5"


def test_sbatch_of_24_11():
    assert slurm.parse_submit(cli("sbatch-parsable.out")) == "16"
    assert slurm.parse_submit(cli("sbatch-plain.out")) == "17"


# ---------------------------------------------------------------------------------------------
# slurmrestd


@pytest.mark.parametrize("version", VERSIONS)
def test_rest_jobs_of_every_version(version):
    said = answer(f"{version}-jobs-http200.json")
    assert said.ok
    jobs = {j.name.removeprefix("bnb-cap-"): j for j in parse_jobs(said.body)}
    assert (jobs["completed"].state, jobs["completed"].exit_code) == (JobState.FINISHED, 0)
    assert (jobs["failed"].state, jobs["failed"].exit_code) == (JobState.FAILED, 3)
    assert jobs["killed"].exit_code == 137 and jobs["killed"].user == "bob"
    assert jobs["completed"].exec_host == "tx-c1"
    assert jobs["completed"].submitted_at is not None


def test_rest_queue_of_v0_0_42():
    body = answer("v0.0.42-jobs-queue-http200.json").body
    jobs = {j.name.removeprefix("bnb-q-"): j for j in parse_jobs(body)}
    assert (jobs["running"].state, jobs["running"].exec_host) == (JobState.RUNNING, "tx-c1")
    assert (jobs["resources"].state, jobs["resources"].reason) == (JobState.PENDING, "Resources")
    assert jobs["resources"].expected_start is None  # not computed yet: 0
    assert jobs["held"].reason == "JobHeldUser"
    assert [j.pending for j in parse_queued_jobs(body)] == [True, True, False]


def test_rest_job_states():
    states = parse_job_states(answer("v0.0.42-jobs-state-queue-http200.json").body)
    # The id slurmctld does not know (999999) is left out, not an error.
    assert states == {"91": "RUNNING", "92": "PENDING", "93": "PENDING"}


def test_an_encoded_comma_in_an_id_list_is_refused_not_unanswered():
    said = answer("v0.0.42-jobs-state-comma-http422.json")
    assert not said.ok and not said.no_answer and "RFC7320" in said.message()


@pytest.mark.parametrize("version", VERSIONS)
def test_rest_accounting_of_every_version(version):
    (job,) = parse_accounting(answer(f"{version}-slurmdb-jobs-http200.json").body)
    assert (job.state, job.reason, job.exec_host) == (
        JobState.CANCELLED,
        "CANCELLED by alice",
        "tx-c1",
    )
    nothing = answer(f"{version}-slurmdb-jobs-nothing-found-http200.json")
    assert nothing.ok and list(parse_accounting(nothing.body)) == []


def test_rest_partitions_and_nodes_of_v0_0_42():
    loads = parse_partition_loads(
        answer("v0.0.42-partitions-http200.json").body, answer("v0.0.42-nodes-http200.json").body
    )
    debug = next(p for p in loads if p.name == "debug")
    assert (debug.state, debug.cpus_total, debug.cpus_idle, debug.nodes_idle) == ("up", 16, 15, 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_rest_refusals_and_silences_of_every_version(version):
    refused = answer(f"{version}-submit-invalid-account-http500.json")
    assert not refused.no_answer and "Invalid account" in refused.message()
    # A token slurmctld refused: 511 on /slurm, 502 on /slurmdb; never "no such job".
    bad_token = answer(f"{version}-jobs-bad-token-http511.json")
    assert bad_token.no_answer and "wrong key" in bad_token.message()
    assert answer(f"{version}-slurmdb-jobs-bad-token-http502.json").no_answer
    assert answer(f"{version}-cancel-unknown-job-http200.json").ok


def test_a_refused_cancel_is_only_in_the_jobs_status():
    # v0.0.42: HTTP 200, no errors, the refusal in status[]; an unknown job is nothing to do.
    denied = answer("v0.0.42-cancel-denied-http200.json")
    assert denied.ok and cancel_refusals(denied.body) == ["job 102: Access/permission denied"]
    assert cancel_refusals(answer("v0.0.42-cancel-unknown-job-http200.json").body) == []
    # v0.0.40 and v0.0.41 say nothing at all: the client looks at the queue (test_trixie.py).
    for version in ("v0.0.40", "v0.0.41"):
        said = answer(f"{version}-cancel-denied-http200.json")
        assert said.ok and cancel_refusals(said.body) == []


# ---------------------------------------------------------------------------------------------
# The client and a stand-in serving the 24.11 answers


class StandIn2411:
    """Serves the captured v0.0.42 answers; the OpenAPI spec lists 24.11's paths."""

    def __init__(self) -> None:
        paths = (REST / "openapi-v3-paths.txt").read_text().split()
        self.spec = {"openapi": "3.0.3", "paths": {path: {} for path in paths}}
        self.requests: list[tuple[str, str, str]] = []
        self.bodies: list[dict] = []
        self.cancel_answer = "v0.0.42-cancel-denied-http200.json"

    async def handle(self, request: web.Request) -> web.Response:
        query = request.raw_path.partition("?")[2]
        self.requests.append((request.method, request.path, query))
        if request.path == "/openapi/v3":
            return web.json_response(self.spec)
        if request.can_read_body:
            self.bodies.append(await request.json())
        name = {
            ("GET", "/slurm/v0.0.42/jobs"): "v0.0.42-jobs-queue-http200.json",
            ("GET", "/slurm/v0.0.42/jobs/state"): "v0.0.42-jobs-state-queue-http200.json",
            ("POST", "/slurm/v0.0.42/job/submit"): "v0.0.42-submit-http200.json",
            ("GET", "/slurm/v0.0.42/ping"): "v0.0.42-ping-http200.json",
            ("DELETE", "/slurm/v0.0.42/job/91"): self.cancel_answer,
        }[(request.method, request.path)]
        status, text = rest(name)
        return web.Response(status=status, text=text, content_type="application/json")


@pytest.fixture
async def site():
    server = StandIn2411()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    client = SlurmRestClient(
        "unit-2411", rest_spec(url=f"http://127.0.0.1:{runner.addresses[0][1]}"), Kube(KEY)
    )
    yield server, client
    await client.close()
    await runner.cleanup()


async def test_the_client_speaks_v0_0_42_to_slurm_24_11(site):
    server, client = site
    assert await client.version() == "24.11.5"
    assert client.api_version == "v0.0.42 (newest both speak)"
    assert server.requests[:2] == [
        ("GET", "/openapi/v3", ""),
        ("GET", "/slurm/v0.0.42/ping", ""),
    ]


async def test_a_submission_in_v0_0_42_has_typed_values_and_the_script_inside(site):
    server, client = site
    script = "#!/bin/bash\n#SBATCH --time=01:30:00\n#SBATCH --mem=2G\n#SBATCH --nodes=2\nexec x\n"
    assert await client.submit(script, "alice", environment={"TOKEN": "t"}) == "66"
    (body,) = server.bodies
    job = body["job"]
    assert (job["time_limit"], job["memory_per_node"], job["nodes"]) == (90, 2048, "2")
    assert job["script"] == script and "script" not in body
    assert "TOKEN=t" in job["environment"] and "USER=alice" in job["environment"]
    assert "TOKEN" not in job["script"]


async def test_a_poll_reads_states_and_lists_only_on_a_change(site):
    server, client = site
    tags = ["bnb-q-running", "bnb-q-resources", "bnb-q-held"]
    first = await client.query(tags, ["91", "92", "93"])
    assert {j.job_id: j.state for j in first.values()} == {
        "91": JobState.RUNNING,
        "92": JobState.PENDING,
        "93": JobState.PENDING,
    }
    second = await client.query(tags, ["91", "92", "93"])
    assert second == first
    polls = [r for r in server.requests if r[1] != "/openapi/v3"]
    # First poll: the listing (nothing known yet). Second: the states only, the ids repeated.
    assert polls == [
        ("GET", "/slurm/v0.0.42/jobs", ""),
        ("GET", "/slurm/v0.0.42/jobs/state", "job_id=91&job_id=92&job_id=93"),
    ]
    assert json.dumps(first["92"].reason) == '"Resources"'


async def test_a_refused_cancel_is_no_cancel(site):
    _server, client = site
    with pytest.raises(SchedulerUnavailable, match="Access/permission denied"):
        await client.cancel(["91"], "bob")


async def test_a_cancel_the_queue_does_not_show_is_no_cancel(site):
    # Taken without a word (as v0.0.40 and v0.0.41 answer), but 91 still runs.
    server, client = site
    server.cancel_answer = "v0.0.42-cancel-http200.json"
    with pytest.raises(SchedulerUnavailable, match="does not show it ending"):
        await client.cancel(["91"], "alice")
