"""The public report endpoint: refusing a request costs no Kubernetes API call, bodies are
bounded, bad reports cannot flood the notebook with events, /metrics is not public."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import REPORT_TOKEN_KEY
from batchnotebook_operator.handlers import report_auth, reports
from batchnotebook_operator.handlers.report_auth import (
    MAX_BODY_BYTES,
    EventLimiter,
    ReportTokens,
    Target,
    Targets,
    TokenUnavailable,
    parse_json,
)
from batchnotebook_operator.registry import registry

PREFIX = "/services/batchnotebook"
TOKEN = "the-right-token"
UID = "uid-1"
URL = "/v1/report/ns/nb"


class FakeKube:
    """Answers like the API server for one notebook `ns/nb`; records every call."""

    def __init__(self, exec_host: str = "localhost", secret_fails: bool = False) -> None:
        self.calls: list[str] = []
        self.events: list[str] = []
        self.secret_fails = secret_fails
        self.notebook_body = {
            "apiVersion": "batchnotebook.dev/v1alpha1",
            "kind": "BatchNotebook",
            "metadata": {"name": "nb", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": {"clusterName": "c1", "envSecretName": "nb-env", "unixUser": "alice"},
            "status": {"phase": "Starting", "execHost": exec_host, "jobId": "7"},
        }
        self.core = SimpleNamespace(read_namespaced_secret=self._read_secret)

    async def _read_secret(self, name: str, namespace: str) -> SimpleNamespace:
        self.calls.append(f"secret {namespace}/{name}")
        await asyncio.sleep(0)  # let concurrent requests pile up behind the first read
        if self.secret_fails:
            raise ApiException(status=500, reason="Internal Server Error")
        token = base64.b64encode(TOKEN.encode()).decode()
        return SimpleNamespace(
            metadata={"ownerReferences": [{"kind": "BatchNotebook", "uid": UID}]},
            data={REPORT_TOKEN_KEY: token},
        )

    async def secret_data(self, namespace: str, name: str) -> dict:
        self.calls.append(f"secret_data {namespace}/{name}")
        return {REPORT_TOKEN_KEY: TOKEN}

    async def notebook(self, namespace: str, name: str) -> dict | None:
        self.calls.append(f"notebook {namespace}/{name}")
        return self.notebook_body if (namespace, name) == ("ns", "nb") else None

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.calls.append(f"patch {namespace}/{name}")
        return True

    async def event(self, ref: dict, type_: str, reason: str, message: str) -> None:
        self.calls.append(f"event {reason}")
        self.events.append(reason)


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    known = Targets()
    known.index = {("ns", "nb"): [Target("ns", "nb", UID, "nb-env")]}
    known.complete = True
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    monkeypatch.setattr(registry, "gone", set())
    monkeypatch.setattr(report_auth, "targets", known)
    # The cluster's spec, from the operator's watch (no API call): exec_host is localhost.
    known.clusters = {"c1": [{"execHosts": {"allowLoopback": True}}]}
    monkeypatch.setattr(report_auth, "report_tokens", ReportTokens())
    monkeypatch.setattr(report_auth, "report_events", EventLimiter())
    return fake


@pytest.fixture
async def client(kube: FakeKube):
    async with TestClient(TestServer(reports.make_app(PREFIX))) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_unknown_notebook_costs_no_api_call(client, kube):
    for path in ("/v1/report/ns/nosuch", "/v1/report/other/nb", "/v1/report/ns/nosuch/ended"):
        answer = await client.post(
            path, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN)
        )
        assert answer.status == 401
    assert kube.calls == []


async def test_a_wrong_token_reads_the_secret_once_then_never(client, kube):
    answers = [
        (await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer("x"))).status
        for _ in range(20)
    ]
    ended = await client.post(f"{URL}/ended", headers=bearer("x"))
    assert answers == [401] * 20 and ended.status == 401
    assert kube.calls == ["secret ns/nb-env"]


async def test_a_missing_notebook_and_a_wrong_token_get_the_same_answer(client, kube):
    body = {"host": "localhost", "port": 1}
    missing = await client.post("/v1/report/ns/nosuch", json=body, headers=bearer(TOKEN))
    wrong = await client.post(URL, json=body, headers=bearer("x"))
    assert (missing.status, await missing.json()) == (wrong.status, await wrong.json())


async def test_concurrent_wrong_tokens_after_a_restart_share_one_secret_read(client, kube):
    body = {"host": "localhost", "port": 1}
    answers = await asyncio.gather(
        *(client.post(URL, json=body, headers=bearer(f"guess{i}")) for i in range(10))
    )
    assert [answer.status for answer in answers] == [401] * 10
    assert kube.calls == ["secret ns/nb-env"]


async def test_a_token_remembered_at_submit_needs_no_secret_read(client, kube):
    report_auth.report_tokens.remember(UID, TOKEN)
    wrong = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer("x"))
    assert wrong.status == 401 and kube.calls == []
    right = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    assert right.status == 200
    assert "secret ns/nb-env" not in kube.calls and kube.calls[0] == "notebook ns/nb"


async def test_the_right_token_still_sees_the_notebook_itself(client, kube):
    answer = await client.post(URL, json={"host": "localhost", "port": 8888}, headers=bearer(TOKEN))
    assert answer.status == 200 and (await answer.json())["url"] == "http://localhost:8888"
    assert kube.calls[:2] == ["secret ns/nb-env", "notebook ns/nb"]


async def test_a_notebook_created_again_under_the_same_name_is_not_the_indexed_one(client, kube):
    kube.notebook_body["metadata"]["uid"] = "uid-2"  # the index has not seen it yet
    answer = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    assert answer.status == 401
    assert "patch ns/nb" not in kube.calls


async def test_a_notebook_known_to_be_gone_is_unknown(client, kube):
    registry.gone.add(UID)
    answer = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    assert answer.status == 401 and kube.calls == []


async def test_before_kopf_has_listed_every_notebook_the_launcher_is_asked_to_retry(client, kube):
    report_auth.targets.complete = False
    answer = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    assert answer.status == 503 and kube.calls == []


async def test_an_api_server_failure_is_retried_only_after_a_while():
    tokens, reads = ReportTokens(), []

    async def failing() -> str | None:
        reads.append(1)
        raise ApiException(status=500, reason="down")

    for now in (100.0, 100.0, 129.0):
        with pytest.raises(TokenUnavailable):
            await tokens.expected(UID, failing, now)
    assert len(reads) == 1
    with pytest.raises(TokenUnavailable):
        await tokens.expected(UID, failing, 130.0)
    assert len(reads) == 2


async def test_a_notebook_without_a_token_takes_no_report_and_costs_one_read():
    tokens, reads = ReportTokens(), []

    async def no_token() -> str | None:
        reads.append(1)
        return None

    assert await tokens.expected(UID, no_token, 0.0) is None
    assert await tokens.expected(UID, no_token, 1.0) is None
    assert len(reads) == 1


async def test_a_secret_that_fails_to_read_answers_503_not_401(client, kube):
    kube.secret_fails = True
    answer = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    again = await client.post(URL, json={"host": "localhost", "port": 1}, headers=bearer(TOKEN))
    assert (answer.status, again.status) == (503, 503)
    assert kube.calls == ["secret ns/nb-env"]


@pytest.mark.parametrize("path", [URL, f"{URL}/ended", f"{PREFIX}{URL}"])
async def test_a_large_body_is_refused_unread(client, kube, path):
    answer = await client.post(path, data=b" " * 1_000_000, headers=bearer(TOKEN))
    assert answer.status == 413 and kube.calls == []


async def test_a_large_chunked_body_is_refused_too(client, kube):
    async def chunks():
        for _ in range(100):
            yield b" " * 10_000

    answer = await client.post(URL, data=chunks(), headers=bearer(TOKEN))
    assert answer.status == 413 and kube.calls == []


async def test_deeply_nested_json_is_a_client_error(client, kube):
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = await client.post(URL, data=deep, headers=bearer(TOKEN))
    assert answer.status == 413
    within_the_limit = b"[" * (MAX_BODY_BYTES // 2) + b"]" * (MAX_BODY_BYTES // 2)
    answer = await client.post(URL, data=within_the_limit, headers=bearer(TOKEN))
    assert answer.status == 400
    assert kube.calls == []


def test_json_too_deep_to_parse_is_a_value_error():
    with pytest.raises(ValueError, match="RecursionError"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b"", b"{", b'{"host": "a", "port": 1}}'])
async def test_malformed_bodies_are_400_without_an_api_call(client, kube, raw):
    answer = await client.post(URL, data=raw, headers=bearer(TOKEN))
    assert answer.status == 400 and kube.calls == []


async def test_fifty_reports_from_the_wrong_host_make_one_event(client, kube):
    body = {"host": "elsewhere", "port": 1}
    for _ in range(50):
        assert (await client.post(URL, json=body, headers=bearer(TOKEN))).status == 403
    assert kube.events == ["ReportRejected"]


def test_the_event_limiter_allows_one_event_per_notebook_and_reason_per_interval():
    limiter = EventLimiter(interval=60)
    assert limiter.allow(("uid-1", "ReportRejected"), now=0)
    assert not limiter.allow(("uid-1", "ReportRejected"), now=59.9)
    assert limiter.allow(("uid-1", "HostRefused"), now=59.9)
    assert limiter.allow(("uid-2", "ReportRejected"), now=59.9)
    assert limiter.allow(("uid-1", "ReportRejected"), now=60)
    assert not limiter.allow(("uid-1", "ReportRejected"), now=61)


def test_the_event_limiter_forgets_old_keys():
    limiter = EventLimiter(interval=60, keep=10)
    for i in range(100):
        assert limiter.allow((f"uid-{i}", "ReportRejected"), now=i * 100)
    assert len(limiter._last) <= 11


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/metrics", 200),
        ("/readyz", 200),
        ("/healthz", 200),
        (f"{PREFIX}/metrics", 404),
        (f"{PREFIX}/readyz", 404),
        (f"{PREFIX}/healthz", 200),
    ],
)
async def test_metrics_and_readiness_are_not_under_the_public_prefix(client, path, status):
    assert (await client.get(path)).status == status


async def test_reports_work_under_the_public_prefix(client, kube):
    answer = await client.post(
        f"{PREFIX}{URL}", json={"host": "localhost", "port": 8888}, headers=bearer(TOKEN)
    )
    assert answer.status == 200


async def test_the_same_report_again_writes_nothing(client, kube):
    """A notebook's own token in a loop (a flood, or the launcher retrying): one status write."""
    report = {"host": "localhost", "port": 8888}
    first = await client.post(URL, json=report, headers=bearer(TOKEN))
    assert first.status == 200
    kube.notebook_body["status"] |= {"reportedHost": "localhost", "reportedPort": 8888}
    kube.notebook_body["status"] |= {"phase": "Ready", "url": "http://localhost:8888"}
    for _ in range(20):
        again = await client.post(URL, json=report, headers=bearer(TOKEN))
        assert again.status == 200 and (await again.json())["url"] == "http://localhost:8888"
    assert kube.calls.count("patch ns/nb") == 1
