"""The attack: a job's owner rewrites the execution host the scheduler reports (HTCondor's
condor_qedit of RemoteHost/LastRemoteHost), or reports a look-alike host, so that the hub's proxy
forwards to cloud metadata or a host of the attacker's. The poll never writes a refused host (one
Warning event says why) and a report never makes it Ready; reports are compared by full name."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from batchnotebook_api import REPORT_TOKEN_KEY
from batchnotebook_api.times import now
from batchnotebook_operator import rounds
from batchnotebook_operator.follow import from_job, ready_fields
from batchnotebook_operator.handlers import report_auth, reports
from batchnotebook_operator.hosts import same_host
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.registry import registry

# What the site's DNS would answer: a compute node, and a name pointing at cloud metadata.
ADDRESSES = {
    "node01.cluster.example": "10.20.0.5",
    "node01.attacker.example": "10.20.0.5",
    "metadata.cluster.example": "169.254.169.254",
}
SITE = {
    "hostRewrite": {"domainSuffix": ".cluster.example"},
    "execHosts": {"patterns": ["node*.cluster.example"]},
}


@pytest.fixture
def dns(monkeypatch):
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(loop, host, port, **kwargs):
        if host not in ADDRESSES:  # e.g. the test client's own connection
            return await real(loop, host, port, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ADDRESSES[host], 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


class Kube:
    """The API server as far as the poll and the report endpoint ask it."""

    def __init__(self, notebook: dict | None = None, spec: dict | None = None) -> None:
        self.body, self.spec = notebook, spec or {}
        self.patches: list[dict] = []
        self.events: list[tuple[str, str, str]] = []

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patches.append(status)
        return True

    async def event(self, _ref: dict, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    async def notebook(self, namespace: str, name: str) -> dict | None:
        return self.body

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        return {REPORT_TOKEN_KEY: "token"}


class Client:
    """A scheduler whose queue shows job 42 running on `host`."""

    name = "c"

    def __init__(self, host: str) -> None:
        self.host = host

    async def query(self, tags, job_ids=()) -> dict[str, JobStatus]:
        job = JobStatus("42", JobState.RUNNING, "RUNNING", "bnb-x", "", exec_host=self.host)
        return {"42": job, "bnb-x": job}  # by id and by name: whichever the poll looks up

    async def accounting(self, **_) -> list[JobStatus]:
        return []


def followed(status: dict) -> dict:
    return {
        "name": "nb",
        "namespace": "ns",
        "uid": "uid-nb",
        "cluster": "c",
        "generation": 1,
        "unixUser": "bob",
        "status": status,
    }


@pytest.mark.parametrize(
    ("exec_host", "spec", "why"),
    [
        ("169.254.169.254", {}, "link-local address 169.254.169.254"),
        ("node01.attacker.example", SITE, "matches none of execHosts.patterns"),
        ("metadata", SITE, "resolves to link-local address 169.254.169.254"),
    ],
)
async def test_a_refused_exec_host_never_makes_the_notebook_ready(
    monkeypatch, dns, exec_host, spec, why
):
    kube = Kube()
    monkeypatch.setattr(registry, "kube", kube, raising=False)
    # The job even reported a matching host and a port: only the policy stands in the way.
    reported = exec_host if "." in exec_host else f"{exec_host}.cluster.example"
    status = {
        "phase": "Queued",
        "jobId": "42",
        "jobName": "bnb-x",
        "reportedHost": reported,
        "reportedPort": 8888,
        "conditions": [],
    }
    for _round in range(3):
        written = len(kube.patches)
        await rounds.poll(Client(exec_host), spec, [followed(status)])
        for patch in kube.patches[written:]:
            status = {k: v for k, v in {**status, **patch}.items() if v is not None}
    assert status["phase"] == "Starting"
    assert not {"execHost", "url", "port"} & set(status)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "HostRefused"
    [(type_, reason, message)] = kube.events  # once, not every round
    assert (type_, reason) == ("Warning", "HostRefused")
    assert message.startswith("the scheduler says job 42 runs on ")
    assert why in message and message.endswith("; not routing there")


async def test_an_allowed_exec_host_still_becomes_ready(monkeypatch, dns):
    kube = Kube()
    monkeypatch.setattr(registry, "kube", kube, raising=False)
    status = {
        "phase": "Queued",
        "jobId": "42",
        "jobName": "bnb-x",
        "reportedHost": "node01",
        "reportedPort": 8888,
        "conditions": [],
    }
    await rounds.poll(Client("node01"), SITE, [followed(status)])
    [patch] = kube.patches
    assert patch["phase"] == "Ready" and patch["url"] == "http://node01.cluster.example:8888"


def test_a_ready_notebook_keeps_its_url_when_its_host_is_rewritten():
    ready = {"phase": "Ready", "execHost": "node01.cluster.example", "conditions": []}
    job = JobStatus("42", JobState.RUNNING, "RUNNING", exec_host="169.254.169.254")
    transition = from_job(
        ready, job, now(), refused_hosts={"169.254.169.254": "link-local address"}
    )
    assert "execHost" not in transition.status and "url" not in transition.status


def test_reports_are_compared_by_full_name():
    rules = {"domainSuffix": ".cluster.example"}
    assert same_host("node01", "node01.cluster.example", rules)
    assert same_host("node01.cluster.example", "NODE01", rules)
    assert same_host("node01.cluster.example.", "node01.cluster.example", None)
    assert not same_host("node01", "node01.attacker.example", rules)
    assert not same_host("node01", "node01.attacker.example", None)
    assert not same_host("node01.cluster.example", "node01.attacker.example", rules)
    status = {"execHost": "node01", "reportedHost": "node01.attacker.example", "reportedPort": 1}
    assert ready_fields(status, 1, now(), rules) == {}


def report_app() -> web.Application:
    app = web.Application()
    app.add_routes(reports.routes)
    return app


def notebook_body(status: dict) -> dict:
    return {  # a uid of its own: report events are rate-limited by notebook
        "metadata": {"name": "nb", "namespace": "ns", "generation": 1, "uid": uuid.uuid4().hex},
        "spec": {"envSecretName": "nb-env", "clusterName": "c"},
        "status": status,
    }


async def post_report(monkeypatch, kube: Kube, host: str) -> tuple[int, dict]:
    """A report that passed authentication (report_auth.py's own tests cover that part)."""
    monkeypatch.setattr(registry, "kube", kube, raising=False)

    async def authenticated(_request):
        return kube.body

    monkeypatch.setattr(reports, "_authenticated", authenticated)
    monkeypatch.setattr(report_auth.targets, "clusters", {"c": [kube.spec]})  # the watch's
    async with TestClient(TestServer(report_app())) as client:
        answer = await client.post(
            "/v1/report/ns/nb",
            json={"host": host, "port": 8888},
            headers={"Authorization": "Bearer token"},
        )
        return answer.status, await answer.json()


async def test_a_report_of_a_look_alike_host_is_rejected(monkeypatch, dns):
    kube = Kube(notebook_body({"phase": "Starting", "execHost": "node01"}), SITE)
    code, answer = await post_report(monkeypatch, kube, "node01.attacker.example")
    assert code == 403 and "runs on node01" in answer["error"]
    assert kube.patches == [] and [e[1] for e in kube.events] == ["ReportRejected"]


async def test_a_report_of_the_full_name_makes_it_ready(monkeypatch, dns):
    status = {"phase": "Starting", "jobId": "42", "execHost": "node01.cluster.example"}
    kube = Kube(notebook_body(status), SITE)
    code, answer = await post_report(monkeypatch, kube, "node01")
    assert code == 200 and answer["url"] == "http://node01.cluster.example:8888"


async def test_a_report_never_makes_a_refused_host_ready(monkeypatch, dns):
    """An execHost written before the policy (or before the admin tightened it) is checked again
    when the report would make the notebook Ready."""
    status = {"phase": "Starting", "jobId": "42", "execHost": "metadata.cluster.example"}
    kube = Kube(notebook_body(status), SITE)
    code, answer = await post_report(monkeypatch, kube, "metadata.cluster.example")
    assert code == 403 and "link-local address 169.254.169.254" in answer["error"]
    assert kube.patches == [] and [e[1] for e in kube.events] == ["HostRefused"]
