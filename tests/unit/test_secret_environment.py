"""The server's tokens are never in the job script (issue 11, item 8): schedulers keep scripts
where others may read them. They wait in a 0600 file in the user's home, written through the
transport with the values on stdin; the launcher deletes it before Jupyter starts, the script's
trap if the job dies before that. A plain-http callbackURL is refused unless the site allows it."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
from kopf_calls import submit
from test_launcher import Receiver

from batchnotebook_api import REPORT_TOKEN_KEY
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources
from batchnotebook_operator import envfile
from batchnotebook_operator.cli import doctor
from batchnotebook_operator.clients.commandline import CommandLineClient
from batchnotebook_operator.handlers import notebooks
from batchnotebook_operator.registry import registry
from batchnotebook_operator.render import callback_problem, job_script
from batchnotebook_operator.schedulers import BACKENDS
from batchnotebook_operator.transports import CommandResult
from batchnotebook_operator.transports.local import LocalTransport

UID = "0b1c2d3e-0000-4000-8000-00000000abcd"
HUB_TOKEN = "hub-TOKEN-5e1f0c"
REPORT_TOKEN = "report-TOKEN-a9d2"
SECRETS = {"JUPYTERHUB_API_TOKEN": HUB_TOKEN, REPORT_TOKEN_KEY: REPORT_TOKEN}
CLUSTER = {"scheduler": "slurm", "callbackURL": "https://hub.example.org/services/batchnotebook"}
# What each backend's submit command prints, so that the client reads a job id.
SUBMITTED = {
    "slurm": "42\n",
    "sge": "42\n",
    "pbspro": "42.server\n",
    "torque": "42.server\n",
    "moab": "\n42\n",
    "lsf": "Job <42> is submitted to default queue <normal>.\n",
    "htcondor": "Submitting job(s).\n1 job(s) submitted to cluster 42.\n",
}


class RecordingTransport:
    """Every command with its user and stdin; the submit command prints a job id."""

    def __init__(self, submitted: str, staging_fails: bool = False) -> None:
        self.submitted = submitted
        self.staging_fails = staging_fails
        self.commands: list[tuple[list[str], str | None, str | None]] = []

    async def run(self, argv, *, user=None, stdin=None) -> CommandResult:
        self.commands.append((list(argv), user, stdin))
        if argv[:2] == ["sh", "-c"] and envfile.DIRECTORY in argv[2]:
            code = 1 if self.staging_fails else 0
            return CommandResult(tuple(argv), code, "", "mkdir: Permission denied\n" * code)
        if argv[:3] == ["id", "-u", "--"]:
            return CommandResult(tuple(argv), 0, "1001\n", "")
        return CommandResult(tuple(argv), 0, self.submitted, "")

    async def close(self) -> None:
        pass


def client_for(backend: str, transport) -> CommandLineClient:
    client = CommandLineClient("c", {**CLUSTER, "scheduler": backend})
    client.transport = transport
    return client


def script_for(client, cluster=CLUSTER, uid=UID, **overrides) -> str:
    return job_script(
        {**cluster, **overrides},
        client.scheduler,
        namespace="ns",
        name="nb",
        uid=uid,
        unix_user="alice",
        resources=Resources(cpus=1, memory="1G", walltime="01:00:00"),
        environment_file=client.environment_in_file,
    )


# --- what reaches the scheduler ----------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_no_token_reaches_the_scheduler_on_any_backend(backend):
    transport = RecordingTransport(SUBMITTED[backend])
    client = client_for(backend, transport)
    script = script_for(client)
    assert await client.submit(script, "alice", environment=SECRETS, uid=UID)
    staged, *rest = transport.commands
    # The tokens went once, on stdin, to the fixed staging command run as the user...
    assert staged == (envfile.write_argv(UID), "alice", envfile.content(SECRETS))
    assert not any(HUB_TOKEN in word or REPORT_TOKEN in word for word in staged[0])
    # ...and nowhere else: not in the script the scheduler keeps, not on a command line.
    for argv, _user, stdin in rest:
        seen = " ".join(argv) + (stdin or "")
        assert HUB_TOKEN not in seen and REPORT_TOKEN not in seen
    assert any(stdin == script for _argv, _user, stdin in rest)
    assert f"/.batchnotebook/env/{UID}\n" in script


async def test_a_refused_submission_removes_the_staged_file():
    class Refusing(RecordingTransport):
        async def run(self, argv, *, user=None, stdin=None):
            if argv[0] == "sbatch":
                self.commands.append((list(argv), user, stdin))
                return CommandResult(tuple(argv), 1, "", "sbatch: error: Invalid account\n")
            return await super().run(argv, user=user, stdin=stdin)

    transport = Refusing("")
    client = client_for("slurm", transport)
    with pytest.raises(Exception, match="Invalid account"):
        await client.submit(script_for(client), "alice", environment=SECRETS, uid=UID)
    assert transport.commands[-1][:2] == (envfile.remove_argv(UID), "alice")


async def test_a_staging_failure_refuses_the_submission_before_any_job():
    transport = RecordingTransport(SUBMITTED["slurm"], staging_fails=True)
    client = client_for("slurm", transport)
    with pytest.raises(Exception, match="cannot store the notebook's environment"):
        await client.submit(script_for(client), "alice", environment=SECRETS, uid=UID)
    assert len(transport.commands) == 1


@pytest.mark.parametrize("uid", ["../../.ssh/authorized_keys", "a/b", "", "-rf", "x" * 65])
def test_a_uid_that_is_not_one_file_name_is_refused(uid):
    with pytest.raises(InvalidOptions):
        envfile.write_argv(uid)
    with pytest.raises(InvalidOptions):
        envfile.remove_argv(uid)


# --- the file, really written and really read --------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home directory for the current user: `getent passwd` answers it (the staging command
    and the job script both ask the passwd database, never $HOME)."""
    home, tools = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    tools.mkdir()
    (tools / "getent").write_text('#!/bin/sh\necho "me:x:$(id -u):$(id -g)::$FAKE_HOME:/bin/sh"\n')
    (tools / "getent").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HOME", str(home))
    return home


def local_transport() -> LocalTransport:
    return LocalTransport(run_as=["env"])  # as the current user: no sudo needed


async def test_the_local_transport_writes_a_0600_file_in_a_0700_directory(home):
    transport = local_transport()
    leftover = home / envfile.DIRECTORY / UID
    leftover.parent.mkdir(parents=True, mode=0o755)
    leftover.write_text("from an earlier attempt")
    leftover.chmod(0o644)  # a stale file is recreated, never reused with its mode
    staged = await transport.run(
        envfile.write_argv(UID), user=getpass.getuser(), stdin=envfile.content(SECRETS)
    )
    assert staged.returncode == 0, staged.stderr
    assert json.loads(leftover.read_text()) == SECRETS
    assert stat.S_IMODE(leftover.stat().st_mode) == 0o600
    assert stat.S_IMODE(leftover.parent.stat().st_mode) == 0o700
    removed = await transport.run(envfile.remove_argv(UID), user=getpass.getuser())
    assert removed.returncode == 0 and not leftover.exists()


def receiver_cluster(receiver: Receiver, seen: Path, **overrides) -> dict:
    """A cluster whose "Jupyter" writes the hub token it was given to `seen`."""
    stand_in = (
        "import os, pathlib, socket, sys, time\n"
        "pathlib.Path(sys.argv[1]).write_text(os.environ.get('JUPYTERHUB_API_TOKEN', ''))\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "time.sleep(1)\n"
    )
    return {
        "scheduler": "slurm",
        "callbackURL": receiver.url.removesuffix("/v1/report/ns/nb"),
        "allowInsecureCallback": True,
        "python": sys.executable,
        "jupyterCommand": [sys.executable, "-c", stand_in, str(seen)],
        **overrides,
    }


async def stage_and_run(home: Path, cluster: dict) -> tuple[subprocess.CompletedProcess, Path]:
    """Stage as submit() does, then run the script as the scheduler would."""
    client = CommandLineClient("c", cluster)
    client.transport = local_transport()
    staged = await client.transport.run(
        envfile.write_argv(UID), user=getpass.getuser(), stdin=envfile.content(SECRETS)
    )
    assert staged.returncode == 0, staged.stderr
    script = script_for(client, cluster)
    assert HUB_TOKEN not in script and REPORT_TOKEN not in script
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHNOTEBOOK_")}
    job = await asyncio.to_thread(
        subprocess.run, ["bash"], input=script, env=env, capture_output=True, text=True, timeout=60
    )
    return job, home / envfile.DIRECTORY / UID


async def test_the_job_reads_the_file_deletes_it_and_jupyter_gets_the_environment(home):
    receiver = Receiver()
    try:
        job, path = await stage_and_run(home, receiver_cluster(receiver, home / "seen"))
    finally:
        receiver.close()
    assert job.returncode == 0, job.stderr
    assert not path.exists()
    assert (home / "seen").read_text() == HUB_TOKEN
    reported, authorization, _body = receiver.reports[0]
    assert reported == "/v1/report/ns/nb" and authorization == f"Bearer {REPORT_TOKEN}"


async def test_a_job_that_dies_before_the_launcher_leaves_no_file(home):
    receiver = Receiver()
    try:
        cluster = receiver_cluster(receiver, home / "seen", prologue="false")
        job, path = await stage_and_run(home, cluster)
    finally:
        receiver.close()
    assert job.returncode != 0 and receiver.reports == []
    assert path.exists() is False and not (home / "seen").exists()


def run_launcher(env_file: str, **extra: str) -> subprocess.CompletedProcess:
    launcher = Path(envfile.__file__).with_name("launcher.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHNOTEBOOK_")}
    env |= {"BATCHNOTEBOOK_ENV_FILE": env_file, "BATCHNOTEBOOK_REPORT_URL": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, str(launcher), "true"],
        env=env | extra,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_launcher_deletes_even_a_file_it_cannot_use(tmp_path):
    path = tmp_path / "env"
    path.write_text("not json")
    done = run_launcher(str(path))
    assert done.returncode == 1 and "cannot read the notebook's environment" in done.stderr
    assert not path.exists()


def test_a_missing_file_says_the_home_must_be_shared(tmp_path):
    done = run_launcher(str(tmp_path / "gone"))
    assert done.returncode == 1
    assert "must be shared by login and compute nodes" in done.stderr


def test_a_requeued_job_never_starts_a_second_server(tmp_path):
    path = tmp_path / "env"
    path.write_text(json.dumps(SECRETS))
    done = run_launcher(str(path), SLURM_RESTART_COUNT="1")
    assert done.returncode == 1 and "never started twice" in done.stderr
    assert not path.exists()


# --- deleting a notebook whose job never started -----------------------------------------------


class FakeKube:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    async def event(self, _ref, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@pytest.mark.parametrize(("status", "discarded"), [({}, True), ({"startedAt": "x"}, False)])
async def test_deleting_a_notebook_that_never_started_removes_its_file(
    monkeypatch, status, discarded
):
    transport = RecordingTransport("")  # the queue is empty: no job to cancel
    client = client_for("slurm", transport)
    monkeypatch.setattr(registry, "kube", FakeKube(), raising=False)
    monkeypatch.setattr(registry, "client", lambda *_: client)
    body = kopf.Body(
        {
            "metadata": {"name": "nb", "namespace": "ns", "uid": UID},
            "spec": {"clusterName": "c", "unixUser": "alice"},
            "status": status,
        }
    )
    await notebooks.cancel(
        body=body,
        spec=body.spec,
        status=body.status,
        uid=UID,
        retry=0,
        clusters_by_name={"c": [CLUSTER]},
        logger=kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()),
    )
    removals = [c for c in transport.commands if c[0] == envfile.remove_argv(UID)]
    assert removals == ([(envfile.remove_argv(UID), "alice", None)] if discarded else [])


# --- the callback URL ---------------------------------------------------------------------------


def test_plain_http_callback_is_refused_unless_the_cluster_allows_it():
    http = {**CLUSTER, "callbackURL": "http://hub.example.org/services/batchnotebook"}
    assert "plain http" in callback_problem(http)
    assert callback_problem({**http, "allowInsecureCallback": True}) == ""
    assert callback_problem(CLUSTER) == ""
    assert "not an https URL" in callback_problem({**http, "callbackURL": "ftp://x"})
    client = client_for("slurm", RecordingTransport(""))
    with pytest.raises(InvalidOptions, match="allowInsecureCallback"):
        script_for(client, http)  # nothing can render a script that would report over http


async def test_doctor_fails_a_plain_http_callback():
    http = {**CLUSTER, "callbackURL": "http://hub.example.org", "profiles": []}
    check = await doctor.check_callback("c", http)
    assert check.level is doctor.Level.FAIL
    assert "plain http" in check.detail and "allowInsecureCallback" in check.detail


async def test_submit_fails_a_notebook_with_a_plain_http_callback(monkeypatch):
    patches: list[dict] = []

    class Kube(FakeKube):
        async def patch_notebook_status(self, namespace, name, status) -> bool:
            patches.append(status)
            return True

    kube = Kube()
    monkeypatch.setattr(registry, "kube", kube, raising=False)
    monkeypatch.setattr(registry, "client", lambda *_: pytest.fail("nothing is run"))
    profile = {"name": "small", "defaults": {"cpus": 1}, "limits": {"maxCpus": 2}}
    cluster = {**CLUSTER, "callbackURL": "http://hub.example.org", "profiles": [profile]}
    body = kopf.Body(
        {
            "metadata": {"name": "nb", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": {
                "clusterName": "c",
                "profile": "small",
                "hubUser": "alice",
                "unixUser": "alice",
                "envSecretName": "nb-env",
            },
            "status": {},
        }
    )
    with pytest.raises(kopf.PermanentError, match="plain http"):
        await submit(body, cluster)
    assert [e[1] for e in kube.events] == ["InsecureCallback"]
    assert patches[-1]["phase"] == "Failed"
