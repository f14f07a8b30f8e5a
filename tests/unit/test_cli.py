"""The admin CLI without a cluster: argument parsing, the render path on a fake API, the doctor's
checks, the status table."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from types import SimpleNamespace

import pytest
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_operator import cli
from batchnotebook_operator.cli import doctor, status
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.model import JobState, JobStatus

PROFILE = {
    "name": "small",
    "defaults": {"cpus": 1, "memory": "1G", "walltime": "01:00:00", "partition": "debug"},
    "limits": {"maxCpus": 2, "maxMemory": "2G", "maxWalltime": "04:00:00", "partitions": ["debug"]},
}


def cluster_spec(**overrides) -> dict:
    return {
        "scheduler": "slurm",
        "callbackURL": "http://operator.example:8080/",
        "allowInsecureCallback": True,
        "python": "/opt/jobenv/bin/python",
        "profiles": [PROFILE],
        **overrides,
    }


class FakeCustom:
    def __init__(self, clusters: dict[str, dict]) -> None:
        self.clusters = clusters

    async def get_cluster_custom_object(self, group, version, plural, name):
        if name not in self.clusters:
            raise ApiException(status=404, reason="Not Found")
        return {"metadata": {"name": name}, "spec": self.clusters[name]}


class FakeKube:
    """The API calls `render` makes, answered from memory."""

    def __init__(self, clusters: dict[str, dict], notebooks=(), secrets=None) -> None:
        self.custom = FakeCustom(clusters)
        self.notebooks = {(n["metadata"]["namespace"], n["metadata"]["name"]): n for n in notebooks}
        self.secrets = secrets or {}

    async def notebook(self, namespace, name):
        return self.notebooks.get((namespace, name))

    async def secret_data(self, namespace, name):
        return self.secrets[(namespace, name)]

    async def close(self):
        pass


@pytest.fixture
def fake_api(monkeypatch):
    def install(kube: FakeKube) -> None:
        async def connect(kubeconfig, context):
            return kube

        monkeypatch.setattr(cli, "connect", connect)

    return install


# --- arguments ----------------------------------------------------------------------------


def test_render_arguments():
    args = cli.parser().parse_args(
        [
            "--context",
            "prod",
            "render",
            "local",
            "small",
            "--user",
            "alice",
            "--set",
            "cpus=4",
            "--set",
            "walltime=02:00:00",
        ]
    )
    assert (args.command, args.cluster, args.profile, args.user) == (
        "render",
        "local",
        "small",
        "alice",
    )
    assert args.options == [("cpus", "4"), ("walltime", "02:00:00")]
    assert args.context == "prod"


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "local", "small", "--set", "cpus"],  # not key=value
        ["render"],  # neither CLUSTER PROFILE nor --notebook
        ["render", "local"],  # no profile
        ["render", "local", "small", "--notebook", "nb"],  # both
        ["status", "-n", "x", "-A"],
        ["status", "-o", "yaml"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "usage: batchnotebook" in capsys.readouterr().err


def test_namespace_from_kubeconfig_context(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "hub"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    assert cli.default_namespace(str(kubeconfig), None) == "hub"
    assert cli.default_namespace(str(kubeconfig), "b") == "default"


# --- render -------------------------------------------------------------------------------


def test_render_prints_the_script_with_no_secret_in_it(fake_api, capsys):
    fake_api(FakeKube({"local": cluster_spec()}))
    code = cli.main(["render", "local", "small", "-n", "hub", "--user", "alice", "--set", "cpus=2"])
    script = capsys.readouterr().out
    assert code == 0
    assert script.startswith("#!/bin/bash\n")
    assert "#SBATCH --cpus-per-task=2\n#SBATCH --mem=1G\n#SBATCH --time=01:00:00\n" in script
    assert "#SBATCH --job-name='bnb-<uid>'" in script
    assert "BATCHNOTEBOOK_REPORT_TOKEN" not in script.split("BATCHNOTEBOOK_LAUNCHER")[0]
    assert (
        'BATCHNOTEBOOK_ENV_FILE="$(getent passwd "$(id -u)" | cut -d: -f6)"'
        "/.batchnotebook/env/'<uid>'\n" in script
    )
    assert (
        "export BATCHNOTEBOOK_REPORT_URL="
        "'http://operator.example:8080/v1/report/hub/<notebook>'" in script
    )
    assert "export BATCHNOTEBOOK_STOP_AFTER=3480" in script  # the default 120 s before walltime
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["render", "local", "small", "--set", "cpus=64"],
            "Invalid server options: cpus must be between 1 and 2 in profile 'small', not 64",
        ),
        (
            ["render", "local", "small", "--set", "colour=red"],
            "Invalid server options: unknown option(s): colour (allowed: cluster, profile, ",
        ),
        (
            ["render", "local", "huge"],
            "Invalid server options: cluster 'local' has no profile 'huge' (it has: small)",
        ),
        (["render", "elsewhere", "small"], "Invalid server options: there is no cluster named"),
    ],
)
def test_render_refuses_what_the_spawner_refuses(fake_api, capsys, argv, message):
    fake_api(FakeKube({"local": cluster_spec()}))
    assert cli.main([*argv, "-n", "hub"]) == 2
    out = capsys.readouterr()
    assert out.err.startswith(message) and out.out == ""


def test_render_applies_the_groups_overrides(fake_api, capsys):
    spec = cluster_spec()
    spec["profiles"][0]["groupOverrides"] = [{"groups": ["staff"], "limits": {"maxCpus": 8}}]
    fake_api(FakeKube({"local": spec}))
    assert cli.main(["render", "local", "small", "-n", "hub", "--set", "cpus=8"]) == 2
    assert "cpus must be between 1 and 2" in capsys.readouterr().err
    argv = ["render", "local", "small", "-n", "hub", "--set", "cpus=8", "--group", "staff"]
    assert cli.main(argv) == 0
    assert "#SBATCH --cpus-per-task=8\n" in capsys.readouterr().out


def test_render_of_a_broken_template_exits_2(fake_api, capsys):
    fake_api(FakeKube({"local": cluster_spec(jobTemplate="#!/bin/sh\n{{ nonsense }}\n")}))
    assert cli.main(["render", "local", "small", "-n", "hub"]) == 2
    assert "the cluster's job template does not render: 'nonsense' is undefined" in (
        capsys.readouterr().err
    )


def test_render_of_a_notebook_shows_no_secret_value(fake_api, capsys):
    notebook = {
        "metadata": {"namespace": "hub", "name": "nb", "uid": "1234-abcd"},
        "spec": {
            "clusterName": "local",
            "profile": "small",
            "hubUser": "alice",
            "unixUser": "alice",
            "resources": {"cpus": 2},
            "envSecretName": "nb-env",
        },
    }
    secret = {"JUPYTERHUB_API_TOKEN": "hub-secret", "BATCHNOTEBOOK_REPORT_TOKEN": "report-secret"}
    fake_api(FakeKube({"local": cluster_spec()}, [notebook], {("hub", "nb-env"): secret}))
    assert cli.main(["render", "--notebook", "nb", "-n", "hub"]) == 0
    script = capsys.readouterr().out
    assert "hub-secret" not in script and "report-secret" not in script
    assert "JUPYTERHUB_API_TOKEN" not in script  # the Secret's names are not in it either
    assert "/.batchnotebook/env/1234-abcd\n" in script
    assert "#SBATCH --job-name=bnb-1234-abcd\n#SBATCH --comment=batchnotebook:hub/nb\n" in script


def test_render_of_a_missing_notebook_exits_1(fake_api, capsys):
    fake_api(FakeKube({"local": cluster_spec()}))
    assert cli.main(["render", "--notebook", "gone", "-n", "hub"]) == 1
    assert capsys.readouterr().err == "batchnotebook: there is no BatchNotebook hub/gone\n"


# --- doctor -------------------------------------------------------------------------------


def test_profile_check_passes_a_good_profile():
    check = doctor.check_profile("local", cluster_spec(), PROFILE)
    assert check.line() == "OK   local: profile small: defaults within limits, template renders"


def test_profile_check_fails_defaults_beyond_limits():
    profile = {**PROFILE, "defaults": {**PROFILE["defaults"], "cpus": 8}}
    check = doctor.check_profile("local", cluster_spec(), profile)
    assert check.line() == (
        "FAIL local: profile small: its defaults break its limits: "
        "cpus must be between 1 and 2 in profile 'small', not 8"
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("#!/bin/sh\n{% if %}\n", "the cluster's job template does not render: "),
        ("#!/bin/sh\n#SBATCH --cpus-per-task={{ cpus }}\n{{ launcher }}\n", "lacks {{ job_name }}"),
        ("#SBATCH --job-name={{ job_name }}\n{{ launcher }}\n", "lacks a first line #!"),
        ("#!/bin/sh\n#SBATCH --job-name={{ job_name }}\n", "lacks {{ launcher }}"),
    ],
)
def test_profile_check_fails_a_bad_template(template, problem):
    check = doctor.check_profile("local", cluster_spec(jobTemplate=template), PROFILE)
    assert check.level is doctor.Level.FAIL and check.what == "profile small"
    assert problem in check.detail


def test_profile_check_finds_a_truncated_job_name():
    """The check looks for the job name in the scheduler's own form (Torque: no dash)."""
    check = doctor.check_profile(
        "pbs", cluster_spec(scheduler="torque", profiles=[PROFILE]), PROFILE
    )
    assert check.level is doctor.Level.OK, check.detail


AT = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status_", "level", "detail"),
    [
        ({}, "WARN", "has not polled this cluster yet: is the operator up?"),
        (
            {
                "lastPollTime": "2026-01-01T11:59:58Z",
                "conditions": [{"type": "SchedulerReachable", "status": "True"}],
            },
            "OK",
            "polls; the scheduler answered 2s ago",
        ),
        (
            {
                "lastPollTime": "2026-01-01T11:59:50Z",
                "conditions": [
                    {"type": "SchedulerReachable", "status": "False", "message": "squeue timed out"}
                ],
            },
            "FAIL",
            "its last poll (10s ago) got no answer: squeue timed out",
        ),
        (
            {
                "lastPollTime": "2026-01-01T11:50:00Z",
                "conditions": [{"type": "SchedulerReachable", "status": "True"}],
            },
            "WARN",
            "last poll 10m ago, one every 10s expected: is the operator up?",
        ),
    ],
)
def test_polling_check(status_, level, detail):
    check = doctor.check_polling("local", cluster_spec(), status_, AT)
    assert (check.level, check.detail) == (level, detail)


# --- status -------------------------------------------------------------------------------


def notebook(name: str, phase: str, job: str = "", **status_fields) -> dict:
    return {
        "metadata": {"namespace": "hub", "name": name, "creationTimestamp": "2026-01-01T11:00:00Z"},
        "spec": {
            "hubUser": "alice",
            "unixUser": "alice",
            "clusterName": "local",
            "profile": "small",
        },
        "status": {
            "phase": phase,
            "jobId": job,
            "jobName": f"bnb-{name}" if job else "",
            **status_fields,
        },
    }


def test_scheduler_column_and_flag():
    running = JobStatus("7", JobState.RUNNING, raw_state="RUNNING", name="bnb-a", user="alice")
    pending = JobStatus("8", JobState.PENDING, raw_state="PENDING", name="bnb-b", reason="Priority")
    # bob's job named after c's notebook, and a job under c's id that is not alice's.
    impostor = JobStatus("99", JobState.RUNNING, raw_state="RUNNING", name="bnb-c", user="bob")
    recycled = JobStatus("9", JobState.RUNNING, raw_state="RUNNING", name="bnb-c", user="bob")
    answer = {"7": running, "8": pending, "99": impostor, "9": recycled}
    assert status.scheduler_word(notebook("a", "Ready", "7"), answer) == ("RUNNING", False)
    assert status.scheduler_word(notebook("b", "Queued", "8"), answer) == (
        "PENDING (Priority)",
        False,
    )
    assert status.scheduler_word(notebook("c", "Starting", "9"), answer) == ("NOT FOUND!", True)
    assert status.scheduler_word(notebook("d", "Completed", "10"), answer) == ("", False)
    assert status.scheduler_word(notebook("e", "Pending"), answer) == ("", False)
    assert status.scheduler_word(notebook("a", "Ready", "7"), "no answer") == (
        "no answer",
        False,
    )


def test_status_table():
    running = JobStatus("7", JobState.RUNNING, raw_state="RUNNING", name="bnb-a")
    rows = [
        status.row(
            notebook(
                "a", "Ready", "7", execHost="node1", port=40001, endsAt="2026-01-01T13:00:00Z"
            ),
            {"7": running},
            AT,
        ),
        status.row(notebook("long-name", "Starting", "9"), {"7": running}, AT),
    ]
    assert rows[1].unknown_to_scheduler and not rows[0].unknown_to_scheduler
    assert status.table(rows).splitlines() == [
        "NAMESPACE   NAME        USER    CLUSTER   PROFILE   PHASE      JOBID   SCHEDULER    "
        "HOST:PORT     AGE   ENDS",
        "hub         a           alice   local     small     Ready      7       RUNNING      "
        "node1:40001   1h    2026-01-01T13:00:00Z",
        "hub         long-name   alice   local     small     Starting   9       NOT FOUND!   "
        "-             1h    -",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59, "59s"), (60, "1m"), (7200, "2h"), (3 * 86400, "3d")]
)
def test_duration(seconds, text):
    assert status.duration(seconds) == text


class RecordingClient:
    """A scheduler client that answers `query` from a dict and records every call."""

    def __init__(self, jobs: dict[str, JobStatus] | None) -> None:
        self.jobs = jobs
        self.queries: list[tuple[list[str], list[str]]] = []

    async def query(self, tags, job_ids=()):
        self.queries.append((sorted(tags), sorted(job_ids)))
        if self.jobs is None:
            raise SchedulerUnavailable("squeue: error: Unable to contact slurm controller")
        return {job.job_id: job for job in self.jobs.values() if job.name in tags}

    async def close(self):
        pass


class ListingCustom:
    def __init__(self, notebooks: list[dict], clusters: list[str]) -> None:
        self.notebooks, self.clusters = notebooks, clusters

    async def list_namespaced_custom_object(self, group, version, namespace, plural):
        return {"items": [n for n in self.notebooks if n["metadata"]["namespace"] == namespace]}

    async def list_cluster_custom_object(self, group, version, plural):
        if plural == "batchclusters":
            return {"items": [{"metadata": {"name": c}, "spec": {}} for c in self.clusters]}
        return {"items": self.notebooks}


async def test_status_asks_each_cluster_once_for_all_its_jobs(monkeypatch):
    running = JobStatus("7", JobState.RUNNING, raw_state="RUNNING", name="bnb-a")
    clients = {"local": RecordingClient({"7": running}), "down": RecordingClient(None)}
    monkeypatch.setattr(status, "make_client", lambda name, spec, kube: clients[name])
    down = notebook("c", "Queued", "11")
    down["spec"]["clusterName"] = "down"
    orphan = notebook("d", "Queued", "12")
    orphan["spec"]["clusterName"] = "deleted"
    notebooks = [notebook("a", "Ready", "7"), notebook("b", "Starting", "9"), down, orphan]
    kube = SimpleNamespace(custom=ListingCustom(notebooks, ["local", "down"]))

    rows = await status.status_rows(kube, "hub")

    assert clients["local"].queries == [(["bnb-a", "bnb-b"], ["7", "9"])]
    assert clients["down"].queries == [(["bnb-c"], ["11"])]
    assert [(r.name, r.scheduler_state, r.unknown_to_scheduler) for r in rows] == [
        ("a", "RUNNING", False),
        ("b", "NOT FOUND!", True),
        ("c", "no answer", False),
        ("d", "no cluster", False),
    ]


@pytest.fixture
async def http_server():
    """Serves a route on a free loopback port; gives its base URL."""
    runners = []

    async def serve(path: str, handler) -> str:
        app = web.Application()
        app.router.add_get(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def test_callback_check_knows_the_report_server(http_server):
    async def healthy(_):
        return web.json_response({"ok": True})

    base = await http_server("/prefix/healthz", healthy)
    check = await doctor.check_callback("local", cluster_spec(callbackURL=f"{base}/prefix/"))
    assert check.level is doctor.Level.OK
    assert check.detail.startswith(f"{base}/prefix/healthz answers")


async def test_callback_check_fails_another_server(http_server):
    async def page(_):
        return web.Response(text="<html>JupyterHub</html>", content_type="text/html")

    base = await http_server("/healthz", page)
    check = await doctor.check_callback("local", cluster_spec(callbackURL=base))
    assert check.level is doctor.Level.FAIL
    assert check.detail.startswith(
        f"{base}/healthz answered HTTP 200 '<html>JupyterHub</html>', not the operator's report "
        'server ({"ok": true})'
    )


class VersionedClient:
    api_version = "v0.0.42 (newest both speak)"

    async def version(self) -> str:
        return "24.11.5"

    async def close(self) -> None:
        pass


async def test_doctor_says_which_api_version_is_spoken(monkeypatch):
    monkeypatch.setattr(doctor, "make_client", lambda name, spec, kube: VersionedClient())
    spec = {"scheduler": "slurm", "connection": {"type": "slurmrest"}}
    check = await doctor.check_connection("trixie-rest", spec, kube=None)  # type: ignore[arg-type]
    assert check.level is doctor.Level.OK
    assert check.detail == "answers, version 24.11.5, API v0.0.42 (newest both speak)"
