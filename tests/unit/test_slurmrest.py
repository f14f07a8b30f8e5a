"""slurmrestd: token signing and renewal, the script's directives as job properties, parsing of
captured answers (tests/fixtures/slurmrest/), and the client against a local stand-in server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import time
from pathlib import Path

import jwt
import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import REGISTRY

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources
from batchnotebook_operator.clients.slurmrest.client import JOB_PATH, Answer, SlurmRestClient
from batchnotebook_operator.clients.slurmrest.directives import job_properties, script_directives
from batchnotebook_operator.clients.slurmrest.token import TokenSigner
from batchnotebook_operator.errors import SchedulerUnavailable, SubmissionRefused
from batchnotebook_operator.model import JobState
from batchnotebook_operator.render import JobRequest, job_script, render
from batchnotebook_operator.schedulers.slurm_json import parse_accounting, parse_jobs

FIXTURES = Path(__file__).parents[1] / "fixtures" / "slurmrest"
CLUSTER_CRD = Path(__file__).parents[2] / "crds" / "batchnotebook.dev_batchclusters.yaml"
KEY = bytes(range(32))


def fixture(name: str) -> tuple[int, str]:
    """A captured answer and its HTTP status (in the file's name)."""
    status = int(name.rsplit("-http", 1)[1].split(".")[0])
    return status, (FIXTURES / name).read_text()


def answer(name: str, request: str = "GET /x as slurm") -> Answer:
    status, text = fixture(name)
    return Answer.read(request, status, text.encode())


def claims(token: str, key: bytes = KEY) -> dict:
    return jwt.decode(
        token, key, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )


# ---------------------------------------------------------------------------------------------
# Tokens


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_is_an_hs256_jwt_for_the_user():
    clock = Clock()
    token = TokenSigner(KEY, 600, clock).token("alice")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims(token) == {"sun": "alice", "iat": int(clock.now), "exp": int(clock.now) + 600}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, b"another key" * 3, algorithms=["HS256"])


def test_tokens_are_per_user_and_reused_until_80_percent_of_their_life():
    clock = Clock()
    signer = TokenSigner(KEY, 100, clock)
    alice, bob = signer.token("alice"), signer.token("bob")
    assert claims(alice)["sun"] == "alice" and claims(bob)["sun"] == "bob"
    clock.now += 79
    assert signer.token("alice") == alice
    clock.now += 1
    renewed = signer.token("alice")
    assert renewed != alice and claims(renewed)["exp"] == int(clock.now) + 100


def test_no_token_handed_out_is_near_its_end():
    clock = Clock(1_800_000_000.5)
    signer = TokenSigner(KEY, 60, clock)
    for _ in range(1000):
        clock.now += 0.37
        token = claims(signer.token("alice"))
        assert token["exp"] - clock.now > 60 * 0.2 - 1  # at least a fifth of its life left


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError):
        TokenSigner(b"", 60)


# ---------------------------------------------------------------------------------------------
# The script's #SBATCH directives → job properties


def default_script(**resources) -> str:
    from batchnotebook_operator.schedulers.slurm import Slurm

    return render(
        Slurm.default_template(),
        JobRequest(
            job_name="bnb-uid",
            comment="batchnotebook:ns/nb",
            user="alice",
            resources=Resources(**resources),
            environment={"BATCHNOTEBOOK_REPORT_TOKEN": "t"},
            jupyter_command=["jupyterhub-singleuser"],
        ),
    )


def test_the_default_template_becomes_job_properties():
    script = default_script(
        cpus=2, memory="4G", walltime="01:00:00", partition="debug", account="research", gpus=1
    )
    script += "#SBATCH --qos=never-read\n"  # after the first command: sbatch ignores it too
    assert job_properties(script_directives(script)) == {
        "name": "bnb-uid",
        "comment": "batchnotebook:ns/nb",
        "standard_output": "batchnotebook-%j.log",
        "tasks": "1",
        "cpus_per_task": "2",
        "memory_per_node": "4G",
        "time_limit": "01:00:00",
        "partition": "debug",
        "account": "research",
        "gres": "gpu:1",
    }


def test_directive_forms():
    script = (
        "#!/bin/bash\n"
        "\n"
        "   # an indented comment does not stop the directives\n"
        "#SBATCH -J name -c4 -p batch --qos normal  # a comment\n"
        "#SBATCH --comment='two words' -t 1-00:00 --hold\n"
        "echo start\n"
    )
    assert job_properties(script_directives(script)) == {
        "name": "name",
        "cpus_per_task": "4",
        "partition": "batch",
        "qos": "normal",
        "comment": "two words",
        "time_limit": "1-00:00",
        "hold": True,
    }


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("#SBATCH --requeue", "--requeue is not passed to slurmrestd"),
        ("#SBATCH --no-requeue=yes", "--no-requeue takes no value"),
        ("#SBATCH --export=NONE", "--export is not passed"),
        ("#SBATCH --part=debug", "--part is not passed"),  # sbatch's abbreviations are not read
        ("#SBATCH --time", "--time needs a value"),
        ("#SBATCH --hold=yes", "--hold takes no value"),
        ("#SBATCH debug", "debug: not an option"),
        ("#PBS -l walltime=1:00:00", "#PBS directives"),
    ],
)
def test_directives_slurmrestd_would_not_apply_are_refused(line, complaint):
    with pytest.raises(InvalidOptions, match=complaint):
        job_properties(script_directives(f"#!/bin/bash\n{line}\ntrue\n"))


def rest_spec(**rest) -> dict:
    return {
        "scheduler": "slurm",
        "connection": {
            "type": "slurmrest",
            "commandTimeoutSeconds": 5,
            "slurmrest": {
                "url": "http://127.0.0.1:1",
                "jwtKeySecret": {"name": "slurm-jwt"},
                "homeDirectory": "/home/{user}",
                **rest,
            },
        },
    }


def test_job_starts_in_the_home_with_a_minimal_environment():
    client = SlurmRestClient("c", rest_spec(homeDirectory="/users/{user}"))
    job = client.job_for(default_script(), "alice")
    assert job["current_working_directory"] == "/users/alice"
    assert job["environment"] == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/users/alice",
        "USER": "alice",
        "LOGNAME": "alice",
    }
    chdir = client.job_for("#!/bin/bash\n#SBATCH --chdir=/scratch/alice\ntrue\n", "alice")
    assert chdir["current_working_directory"] == "/scratch/alice"
    assert chdir["environment"]["HOME"] == "/users/alice"


def test_without_a_home_directory_nothing_is_submitted():
    spec = rest_spec()
    del spec["connection"]["slurmrest"]["homeDirectory"]
    with pytest.raises(InvalidOptions, match="homeDirectory"):
        SlurmRestClient("c", spec).job_for(default_script(), "alice")


# ---------------------------------------------------------------------------------------------
# Captured answers


def test_queue_listing():
    jobs = {j.job_id: j for j in parse_jobs(json.loads(fixture("jobs-http200.json")[1]))}
    assert set(jobs) == {"198", "199", "200", "201", "202", "203"}
    running = jobs["198"]
    assert (running.name, running.user, running.state) == (
        "srtest-running",
        "alice",
        JobState.RUNNING,
    )
    assert running.exec_host == "vm" and running.reason == "" and running.exit_code is None
    assert jobs["199"].state is JobState.PENDING and jobs["199"].reason == "Dependency"
    assert jobs["199"].exec_host == "" and jobs["199"].expected_start is None
    assert jobs["200"].reason == "JobHeldUser"
    assert jobs["201"].state is JobState.FINISHED and jobs["201"].exit_code == 0
    assert jobs["202"].state is JobState.FAILED and jobs["202"].exit_code == 3
    assert jobs["202"].reason == "NonZeroExitCode"
    assert jobs["203"].exit_code == 128 + 9


def test_pending_job_with_an_expected_start():
    listing = json.loads(fixture("jobs-http200.json")[1])
    held = next(j for j in listing["jobs"] if j["job_id"] == 200)
    held |= {"state_reason": "Resources", "start_time": 1_795_400_000}
    (job,) = parse_jobs({"jobs": [held]})
    assert job.expected_start == dt.datetime.fromtimestamp(1_795_400_000, dt.UTC)


def test_accounting():
    jobs = {
        j.job_id: j for j in parse_accounting(json.loads(fixture("slurmdb-jobs-http200.json")[1]))
    }
    assert set(jobs) == {"198", "199", "200", "201", "202", "203"}  # steps are not jobs
    assert jobs["198"].state is JobState.CANCELLED and jobs["198"].reason == "CANCELLED by alice"
    assert jobs["198"].exec_host == "vm" and jobs["198"].user == "alice"
    assert jobs["199"].exec_host == ""  # "None assigned"
    assert jobs["201"].state is JobState.FINISHED and jobs["201"].exit_code == 0
    assert jobs["202"].state is JobState.FAILED
    assert jobs["202"].exit_code is None  # dbv0.0.38 says SUCCESS/0 for `exit 3`: not believed
    assert jobs["203"].exit_code == 128 + 9


@pytest.mark.parametrize(
    "name",
    [
        "jobs-bad-token-http500.json",
        "ping-bad-token-http500.json",
        "slurmdb-jobs-bad-token-http200.json",
        "submit-bad-token-http500.json",
        "cancel-bad-token-http500.json",
        "jobs-no-token-http401.txt",
        "wrong-path-http404.txt",
    ],
)
def test_a_refused_token_or_a_wrong_url_is_no_answer(name):
    said = answer(name)
    assert not said.ok and said.no_answer


def test_a_refused_token_says_so():
    message = answer("jobs-bad-token-http500.json").message()
    assert "HTTP 500: Failed while looking for jobs: Unspecified error" in message
    assert "wrong key" in message


@pytest.mark.parametrize(
    "name, words",
    [
        (
            "submit-invalid-account-http500.json",
            "Invalid account or account/partition combination specified",
        ),
        ("submit-invalid-partition-http500.json", "Invalid partition name specified"),
        ("submit-gres-unavailable-http400.json", "Failure during parsing"),
        ("submit-no-environment-http400.json", "environment must be set; Failure during parsing"),
        (
            "cancel-denied-http500.json",
            "unable to kill JobId=204 with signal 9: Access/permission denied",
        ),
        ("cancel-unknown-job-http500.json", "Invalid job id specified"),
    ],
)
def test_slurms_answers_keep_its_words(name, words):
    said = answer(name)
    assert not said.ok and not said.no_answer
    assert words in said.message() and "wrong key" not in said.message()


def test_nothing_found_is_an_empty_answer():
    said = answer("slurmdb-jobs-nothing-found-http200.json")
    assert said.ok and list(parse_accounting(said.body)) == []


def test_a_server_error_without_slurms_word_is_no_answer():
    said = Answer.read("POST /x as alice", 500, b'{"meta": {}, "errors": []}')
    assert said.no_answer and not said.ok


def test_controller_down_is_no_answer():
    # Not captured (the shared slurmctld stays up): libslurm's own text for error 1800.
    said = Answer.read(
        "GET /slurm/v0.0.38/jobs as slurm",
        500,
        json.dumps(
            {
                "errors": [
                    {
                        "error_number": 1800,
                        "error": "Unable to contact slurm controller (connect failure)",
                    }
                ],
                "jobs": [],
            }
        ).encode(),
    )
    assert said.no_answer and "Unable to contact slurm controller" in said.message()


# ---------------------------------------------------------------------------------------------
# The client against a local stand-in for slurmrestd that serves the captured answers


class Kube:
    def __init__(self, key: bytes = KEY) -> None:
        self.key = key
        self.reads = 0

    async def secret_bytes(self, namespace: str, name: str) -> dict[str, bytes]:
        self.reads += 1
        if name != "slurm-jwt":
            raise ApiException(status=404, reason="Not Found")
        return {"jwt_hs256.key": self.key}


class StandIn:
    """Answers with a captured file per request path; records every request and its token."""

    def __init__(self) -> None:
        # The spec of slurmrestd 22.05 (its paths): the client speaks v0.0.38 to it.
        self.routes: dict[tuple[str, str], str] = {
            ("GET", "/openapi/v3"): "openapi-v3-http200.json"
        }
        self.requests: list[dict] = []
        self.spec_requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/openapi/v3":  # the version's choice, counted apart
            self.spec_requests += 1
            status, text = fixture(self.routes[("GET", "/openapi/v3")])
            return web.Response(status=status, text=text, content_type="application/json")
        token = request.headers.get("X-SLURM-USER-TOKEN", "")
        try:
            # As slurmctld would: the signature and the expiry, at the moment it arrives.
            valid = jwt.decode(token, KEY, algorithms=["HS256"])
        except jwt.PyJWTError:
            valid = None
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.raw_path.partition("?")[2],  # as sent, not decoded
                "user": request.headers.get("X-SLURM-USER-NAME"),
                "claims": valid,
                "body": await request.json() if request.can_read_body else None,
            }
        )
        status, text = fixture(self.routes[(request.method, request.path)])
        return web.Response(status=status, text=text, content_type="application/json")


@pytest.fixture
async def stand_in():
    server = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def client(stand_in):
    made = SlurmRestClient("unit-rest", rest_spec(url=stand_in.url), Kube())
    yield made
    await made.close()


def commands(command: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "batchnotebook_scheduler_commands_total",
        {"cluster": "unit-rest", "command": command, "outcome": outcome},
    )
    return value or 0.0


async def test_query_lists_once_as_the_query_user_and_keeps_our_jobs(client, stand_in):
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-http200.json"
    before = commands("query", "ok")
    jobs = await client.query(["srtest-running", "srtest-held", "bnb-elsewhere"], ["198"])
    # By job id: a name is anyone's to choose.
    assert set(jobs) == {"198", "200"}
    assert jobs["198"].name == "srtest-running" and jobs["198"].user == "alice"
    (request,) = stand_in.requests
    # The default query user: the operator's unprivileged account, never SlurmUser.
    assert request["user"] == "batchnotebook" and request["claims"]["sun"] == "batchnotebook"
    assert commands("query", "ok") == before + 1
    assert await client.query([]) == {} and len(stand_in.requests) == 1


async def test_a_refused_token_never_reads_as_job_gone(client, stand_in):
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-bad-token-http500.json"
    stand_in.routes[("GET", "/slurmdb/v0.0.38/jobs")] = "slurmdb-jobs-bad-token-http200.json"
    with pytest.raises(SchedulerUnavailable, match="Unspecified error"):
        await client.query(["srtest-running"])
    with pytest.raises(SchedulerUnavailable, match="Protocol authentication error"):
        await client.accounting(job_ids=["198"])
    with pytest.raises(SchedulerUnavailable):
        await client.find("srtest-running", "alice")


async def test_accounting_is_one_batched_query(client, stand_in):
    stand_in.routes[("GET", "/slurmdb/v0.0.38/jobs")] = "slurmdb-jobs-http200.json"
    jobs = await client.accounting(job_ids=["203", "198", "201"])
    assert {j.job_id for j in jobs} >= {"198", "201", "203"}
    (request,) = stand_in.requests
    assert request["query"] == "skip_steps=true&step=198%2C201%2C203"  # a raw comma is refused
    await client.accounting(tags=["bnb-b", "bnb-a"])
    assert stand_in.requests[-1]["query"] == (
        "skip_steps=true&job_name=bnb-a%2Cbnb-b&start_time=now-7days"
    )
    assert await client.accounting() == [] and len(stand_in.requests) == 2


async def test_find_falls_back_to_accounting(client, stand_in):
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-http200.json"
    stand_in.routes[("GET", "/slurmdb/v0.0.38/jobs")] = "slurmdb-jobs-nothing-found-http200.json"
    assert (await client.find("srtest-failed", "alice")).job_id == "202"
    assert await client.find("srtest-failed", "bob") is None  # not bob's job, whatever its name
    assert await client.find("bnb-never-submitted", "alice") is None


async def test_submit_as_the_user_with_the_script_and_its_options(client, stand_in):
    stand_in.routes[("POST", "/slurm/v0.0.38/job/submit")] = "submit-held-http200.json"
    script = default_script(cpus=2, walltime="00:30:00")
    before = commands("submit", "ok")
    assert await client.submit(script, "alice") == "204"
    assert commands("submit", "ok") == before + 1  # "held" beside a job id is a note
    (request,) = stand_in.requests
    assert request["user"] == "alice" and request["claims"]["sun"] == "alice"
    assert request["body"]["script"] == script
    job = request["body"]["job"]
    assert job["name"] == "bnb-uid" and job["cpus_per_task"] == "2"
    assert job["time_limit"] == "00:30:00" and job["current_working_directory"] == "/home/alice"


async def test_the_tokens_go_in_the_jobs_environment_never_in_its_script(client, stand_in):
    """slurmrestd stores the script (sacct -B, scontrol write batch_script): the server's
    environment travels as the job's `environment` property instead."""
    stand_in.routes[("POST", "/slurm/v0.0.38/job/submit")] = "submit-held-http200.json"
    cluster = {"scheduler": "slurm", "callbackURL": "https://hub.example.org"}
    script = job_script(
        cluster,
        client.scheduler,
        namespace="ns",
        name="nb",
        uid="uid-1",
        unix_user="alice",
        resources=Resources(cpus=1),
        environment_file=client.environment_in_file,
    )
    secrets = {"JUPYTERHUB_API_TOKEN": "hub-TOKEN-7f3a", "BATCHNOTEBOOK_REPORT_TOKEN": "rep-9c1e"}
    assert await client.submit(script, "alice", environment=secrets, uid="uid-1") == "204"
    (request,) = stand_in.requests
    sent_script = request["body"]["script"]
    assert "TOKEN-7f3a" not in sent_script and "rep-9c1e" not in sent_script
    assert ".batchnotebook/env" not in sent_script  # no file on this path
    assert "#SBATCH --no-requeue" in sent_script  # the default template works here too
    assert request["body"]["job"]["environment"] == {
        "PATH": JOB_PATH,
        "HOME": "/home/alice",
        "USER": "alice",
        "LOGNAME": "alice",
        **secrets,
    }


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("submit-invalid-account-http500.json", SubmissionRefused, "Invalid account"),
        ("submit-gres-unavailable-http400.json", SubmissionRefused, "Failure during parsing"),
        ("submit-bad-token-http500.json", SchedulerUnavailable, "Zero Bytes"),
        ("jobs-no-token-http401.txt", SchedulerUnavailable, "Authentication failure"),
    ],
)
async def test_submit_failures(client, stand_in, name, error, words):
    stand_in.routes[("POST", "/slurm/v0.0.38/job/submit")] = name
    with pytest.raises(error, match=words):
        await client.submit(default_script(), "alice")


async def test_cancel_as_the_user(client, stand_in):
    stand_in.routes[("DELETE", "/slurm/v0.0.38/job/198")] = "cancel-http200.json"
    stand_in.routes[("DELETE", "/slurm/v0.0.38/job/204")] = "cancel-denied-http500.json"
    await client.cancel(["198"], "alice")
    assert stand_in.requests[-1]["user"] == "alice"
    with pytest.raises(SchedulerUnavailable, match="Access/permission denied"):
        await client.cancel(["204"], "bob")
    assert stand_in.requests[-1]["claims"]["sun"] == "bob"


async def test_version(client, stand_in):
    stand_in.routes[("GET", "/slurm/v0.0.38/ping")] = "ping-http200.json"
    assert await client.version() == "22.05.8"


async def test_a_refused_token_makes_the_key_be_read_again(client, stand_in):
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-bad-token-http500.json"
    with pytest.raises(SchedulerUnavailable):
        await client.query(["x"])
    assert client.kube.reads == 1
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-http200.json"
    await client.query(["x"])
    await client.query(["x"])
    assert client.kube.reads == 2


async def test_a_missing_key_secret_is_no_answer():
    spec = rest_spec()
    spec["connection"]["slurmrest"]["jwtKeySecret"] = {"name": "nosuch", "namespace": "ops"}
    client = SlurmRestClient("unit-rest", spec, Kube())
    with pytest.raises(SchedulerUnavailable, match="Secret ops/nosuch: Not Found"):
        await client.query(["x"])


async def test_nobody_listening_is_no_answer():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SlurmRestClient("unit-rest", rest_spec(url=f"http://127.0.0.1:{port}"), Kube())
    before = commands("openapi", "timeout")
    try:
        with pytest.raises(SchedulerUnavailable, match="did not answer"):
            await client.query(["x"])
    finally:
        await client.close()
    # The first request, the one that learns which API version to speak, found nobody.
    assert commands("openapi", "timeout") == before + 1


async def test_a_slurmrest_connection_needs_slurm():
    client = SlurmRestClient("unit-rest", {**rest_spec(), "scheduler": "pbspro"}, Kube())
    with pytest.raises(SchedulerUnavailable, match="needs scheduler: slurm"):
        await client.version()


def cel_holds(rule: str, spec: dict) -> bool:
    """The few CEL forms the rule uses (has(), ==, !=, !, ||), evaluated in Python on `spec`."""

    def value(path: str):
        found = spec
        for name in path.split("."):
            found = found[name]
        return found

    def has(path: str) -> bool:
        try:
            value(path)
        except KeyError:
            return False
        return True

    python = re.sub(r"has\(self\.([\w.]+)\)", r"has('\1')", rule)
    python = re.sub(r"self\.([\w.]+)", r"value('\1')", python)
    python = python.replace("||", " or ").replace("!has", " not has")
    return eval(python, {"has": has, "value": value})


def test_the_crd_refuses_a_slurmrest_connection_to_another_scheduler():
    """The API server refuses the spec the client above could only fail on at run time."""
    crd = yaml.safe_load(CLUSTER_CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    [rule] = [v for v in spec["x-kubernetes-validations"] if "slurmrest" in v["rule"]]
    assert "slurmrest needs scheduler: slurm" in rule["message"]
    rest = rest_spec()["connection"]
    assert not cel_holds(rule["rule"], {"scheduler": "pbspro", "connection": rest})
    assert cel_holds(rule["rule"], {"scheduler": "slurm", "connection": rest})
    assert cel_holds(rule["rule"], {"scheduler": "pbspro", "connection": {"type": "ssh"}})
    assert cel_holds(rule["rule"], {"scheduler": "pbspro", "connection": {}})
    assert cel_holds(rule["rule"], {"scheduler": "lsf"})


async def test_tokens_renew_and_none_arrives_expired(stand_in):
    """A real clock and a 2-second lifetime: every request for 3.5 s carries a token the server
    still accepts, and the token was renewed on the way."""
    stand_in.routes[("GET", "/slurm/v0.0.38/jobs")] = "jobs-http200.json"
    spec = rest_spec(url=stand_in.url, tokenLifetimeSeconds=2)
    client = SlurmRestClient("unit-rest", spec, Kube())
    try:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            await client.query(["srtest-running"])
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    seen = [r["claims"] for r in stand_in.requests]
    assert len(seen) > 10 and all(seen), "a request arrived with a token the server refused"
    assert len({c["iat"] for c in seen}) >= 2, "the token was never renewed"
