"""Leader election between operator replicas: the decisions with a given clock (election.py),
two electors against one in-memory Lease with resourceVersion checks (lease.py), and a standby
forwarding job reports to the leader (standby.py)."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_operator.election import Election, Record, Timing
from batchnotebook_operator.lease import URL_ANNOTATION, LeaseElector, micro_time
from batchnotebook_operator.standby import Standby, forwarder, make_app

TIMING = Timing(duration=15, renew_deadline=10, retry_period=2)


def held_by(holder: str, version: str, url: str = "") -> Record:
    return Record(holder=holder, duration=15, version=version, url=url)


def test_timing_must_let_the_holder_stop_before_another_may_start():
    with pytest.raises(ValueError):
        Timing(duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        Timing(duration=15, renew_deadline=1, retry_period=2)


def test_a_missing_or_released_lease_may_be_taken_at_once():
    election = Election("b", TIMING)
    assert election.may_take(now=0)
    election.observe(held_by("", "7"), now=0)
    assert election.may_take(now=0)


def test_a_held_lease_is_taken_only_after_standing_still_for_its_duration():
    election = Election("b", TIMING)
    election.observe(held_by("a", "1"), now=100)
    assert not election.may_take(now=114.9)
    election.observe(held_by("a", "1"), now=114.9)  # read again, unchanged: the clock runs on
    assert election.may_take(now=115)


def test_every_renewal_restarts_the_wait_whatever_the_clocks_say():
    election = Election("b", TIMING)
    election.observe(held_by("a", "1"), now=100)
    election.observe(held_by("a", "2"), now=110)  # renewed (a new resourceVersion)
    assert not election.may_take(now=120)
    assert election.may_take(now=125)


def test_the_holder_acts_only_within_the_renew_deadline():
    election = Election("a", TIMING)
    assert not election.leading(now=0)
    election.won(held_by("a", "1"), sent=0)
    assert election.leading(now=9.9)
    assert not election.leading(now=10), "stops before a standby (15 s) may start"


def test_the_deadline_counts_from_the_sending_of_the_renewal():
    election = Election("a", TIMING)
    election.won(held_by("a", "1"), sent=100)
    assert election.time_left(now=104) == 6
    assert election.time_left(now=110) == 0


def test_a_holder_that_sees_another_holder_stops_at_once():
    election = Election("a", TIMING)
    election.won(held_by("a", "1"), sent=0)
    election.observe(held_by("b", "2"), now=1)
    assert not election.leading(now=1)


def test_claims_count_the_changes_of_holder():
    election = Election("b", TIMING)
    election.observe(Record("a", 15, "1", transitions=3), now=0)
    assert election.claim() == ("b", 4)
    election.won(Record("b", 15, "2", transitions=4), sent=20)
    assert election.claim() == ("b", 4), "a renewal is no transition"


def test_the_leader_url_is_the_holders_and_never_ones_own():
    election = Election("b", TIMING)
    assert election.leader_url() == ""
    election.observe(held_by("a", "1", "http://10.0.0.1:8080"), now=0)
    assert election.leader_url() == "http://10.0.0.1:8080"
    election.observe(held_by("b", "2", "http://10.0.0.2:8080"), now=1)
    assert election.leader_url() == ""


def test_micro_time_keeps_six_digits():
    import datetime as dt

    moment = dt.datetime(2026, 12, 3, 1, 2, 3, tzinfo=dt.UTC)
    assert micro_time(moment) == "2026-12-03T01:02:03.000000Z"


class FakeLeases:
    """coordination.k8s.io Leases in memory, with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.stored: dict | None = None
        self.version = 0
        self.down = False
        self.hang_reads = 0  # so many reads hang forever, as on a connection the network broke

    def _lease(self) -> SimpleNamespace:
        assert self.stored is not None
        meta, spec = self.stored["metadata"], self.stored["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(
                resource_version=meta["resourceVersion"], annotations=meta.get("annotations")
            ),
            spec=SimpleNamespace(
                holder_identity=spec["holderIdentity"],
                lease_duration_seconds=spec["leaseDurationSeconds"],
                lease_transitions=spec["leaseTransitions"],
            ),
        )

    def _store(self, body: dict) -> SimpleNamespace:
        self.version += 1
        self.stored = copy.deepcopy(body)
        self.stored["metadata"]["resourceVersion"] = str(self.version)
        return self._lease()

    async def read_namespaced_lease(self, name: str, namespace: str) -> SimpleNamespace:
        if self.hang_reads:
            self.hang_reads -= 1
            await asyncio.sleep(3600)
        if self.down:
            raise ConnectionResetError("the API server went away")
        if self.stored is None:
            raise ApiException(status=404)
        return self._lease()

    async def create_namespaced_lease(self, namespace: str, body: dict) -> SimpleNamespace:
        if self.down:
            raise ApiException(status=503)
        if self.stored is not None:
            raise ApiException(status=409)
        return self._store(body)

    async def replace_namespaced_lease(self, name: str, namespace: str, body: dict):
        if self.down:
            raise ApiException(status=503)
        if self.stored is None:
            raise ApiException(status=404)
        if body["metadata"].get("resourceVersion") != self.stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        return self._store(body)


FAST = Timing(duration=1, renew_deadline=0.6, retry_period=0.05)  # a Lease counts whole seconds


def elector(leases: FakeLeases, identity: str) -> LeaseElector:
    election = Election(identity, FAST)
    return LeaseElector(leases, "ops", "bnb", election, f"http://{identity}:8080")  # type: ignore[arg-type]


async def test_two_electors_one_leader_and_a_takeover_after_the_duration():
    leases = FakeLeases()
    a, b = elector(leases, "a"), elector(leases, "b")
    await a.step()
    await b.step()
    assert a.election.leading(asyncio.get_running_loop().time())
    assert leases.stored["spec"]["holderIdentity"] == "a"
    assert leases.stored["metadata"]["annotations"][URL_ANNOTATION] == "http://a:8080"
    assert b.election.leader_url() == "http://a:8080"

    # a dies (renews no more): b takes over once the record stood still for the duration.
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(b.until_leading(), 5)
    waited = asyncio.get_running_loop().time() - started
    assert FAST.duration <= waited < FAST.duration + 0.5
    assert leases.stored["spec"]["holderIdentity"] == "b"
    assert leases.stored["spec"]["leaseTransitions"] == 1

    await a.step()  # a comes back (a frozen process): it sees b and does not act
    assert not a.election.leading(asyncio.get_running_loop().time())


async def test_a_renewing_leader_keeps_the_lease():
    leases = FakeLeases()
    a, b = elector(leases, "a"), elector(leases, "b")
    await a.until_leading()
    keeping = asyncio.create_task(a.keep_leading())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b.until_leading(), 3 * FAST.duration)
    assert not keeping.done()
    keeping.cancel()


async def test_a_leader_that_cannot_renew_stops_within_the_deadline():
    leases = FakeLeases()
    a = elector(leases, "a")
    await a.until_leading()
    leases.down = True
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(a.keep_leading(), 2)
    assert asyncio.get_running_loop().time() - started < FAST.duration


async def test_a_hung_request_does_not_cost_the_leader_its_lease():
    """Found by the chaos campaign: after a second of reset connections one renewal's read hung
    for the whole renew deadline, while fresh requests worked, and the leader exited."""
    leases = FakeLeases()
    a = elector(leases, "a")
    await a.until_leading()
    leases.hang_reads = 2
    keeping = asyncio.create_task(a.keep_leading())
    await asyncio.sleep(3 * FAST.renew_deadline)
    assert not keeping.done() and leases.hang_reads == 0
    assert a.election.leading(asyncio.get_running_loop().time())
    keeping.cancel()


async def test_a_released_lease_is_taken_at_once():
    leases = FakeLeases()
    a, b = elector(leases, "a"), elector(leases, "b")
    await a.until_leading()
    await b.step()
    await a.release()
    assert leases.stored["spec"]["holderIdentity"] == ""
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(b.until_leading(), 2)
    assert asyncio.get_running_loop().time() - started < FAST.duration


async def test_a_standby_forwards_reports_to_the_leader_and_serves_health():
    seen: list[tuple[str, str, bytes]] = []

    async def leader_report(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["Authorization"], await request.read()))
        return web.json_response({"phase": "Ready", "url": "http://n1:9000/"})

    leader = web.Application()
    leader.router.add_post("/v1/report/{namespace}/{name}", leader_report)
    leader.router.add_post("/v1/report/{namespace}/{name}/ended", leader_report)
    async with TestServer(leader) as leader_server:
        url = str(leader_server.make_url("")).rstrip("/")
        leader_url = [url]
        async with TestClient(TestServer(web.Application())) as scratch:
            session = scratch.session
            app = make_app("/services/bnb", forwarder(lambda: leader_url[0], session))
            async with TestClient(TestServer(app)) as standby:
                token = {"Authorization": "Bearer secret"}
                answer = await standby.post(
                    "/services/bnb/v1/report/ns/nb",
                    json={"host": "n1", "port": 9000},
                    headers=token,
                )
                assert answer.status == 200
                assert (await answer.json())["phase"] == "Ready"
                answer = await standby.post("/v1/report/ns/nb/ended", headers=token)
                assert answer.status == 200
                assert [s[0] for s in seen] == ["/v1/report/ns/nb", "/v1/report/ns/nb/ended"]
                assert seen[0][1] == "Bearer secret"
                assert b'"port": 9000' in seen[0][2]

                bad = await standby.post("/v1/report/NS!/nb", headers=token)
                assert bad.status in (401, 404)
                leader_url[0] = ""  # between two leaders
                assert (await standby.post("/v1/report/ns/nb", headers=token)).status == 503
                assert (await standby.get("/readyz")).status == 200
                assert (await standby.get("/healthz")).status == 200
                assert (await standby.get("/services/bnb/metrics")).status == 404


async def test_the_standby_gives_its_ports_back(unused_tcp_port_factory):
    port, liveness = unused_tcp_port_factory(), unused_tcp_port_factory()
    standby = Standby(f"127.0.0.1:{port}", "", f"http://127.0.0.1:{liveness}/healthz")
    await standby.start(lambda: "")
    async with TestClient(TestServer(web.Application())) as scratch:
        answer = await scratch.session.get(f"http://127.0.0.1:{liveness}/healthz")
        assert answer.status == 200
    await standby.stop()
    # kopf binds the same ports next.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    server.close()
    await server.wait_closed()


def test_the_peer_url_brackets_an_ipv6_pod_address(monkeypatch):
    from batchnotebook_operator.__main__ import peer_url

    monkeypatch.delenv("BATCHNOTEBOOK_PEER_URL", raising=False)
    monkeypatch.setenv("BATCHNOTEBOOK_POD_IP", "10.1.2.3")
    assert peer_url("0.0.0.0:8080") == "http://10.1.2.3:8080"
    monkeypatch.setenv("BATCHNOTEBOOK_POD_IP", "fd00::7")
    assert peer_url("0.0.0.0:8080") == "http://[fd00::7]:8080"
    monkeypatch.setenv("BATCHNOTEBOOK_PEER_URL", "http://127.0.0.1:18081")
    assert peer_url("127.0.0.1:18081") == "http://127.0.0.1:18081"


async def test_a_standby_never_forwards_to_its_own_address():
    """A replica restarted at its address finds its dead predecessor's URL, its own, in the
    Lease: forwarding there sent each report round to itself until every request timed out."""
    seen: list[str] = []

    async def leader_report(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({})

    leader = web.Application()
    leader.router.add_post("/v1/report/{namespace}/{name}", leader_report)
    async with TestServer(leader) as leader_server:
        own = str(leader_server.make_url("")).rstrip("/")
        async with TestClient(TestServer(web.Application())) as scratch:
            app = make_app("", forwarder(lambda: own + "/", scratch.session, own_url=own))
            async with TestClient(TestServer(app)) as standby:
                answer = await standby.post("/v1/report/ns/nb", headers={"Authorization": "x"})
                assert answer.status == 503
    assert seen == []


async def test_a_standby_lets_go_at_once_of_a_forward_the_leader_never_answers(
    unused_tcp_port_factory,
):
    """Promoted, the standby stops its servers: a report stuck on a silent leader must not hold
    the ports (nor the Lease's first renewal) for the forward's 30 s."""
    arrived = asyncio.Event()

    async def silent(_: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(3600)
        return web.json_response({})

    leader = web.Application()
    leader.router.add_post("/v1/report/{namespace}/{name}", silent)
    port, liveness = unused_tcp_port_factory(), unused_tcp_port_factory()
    async with TestServer(leader) as leader_server:
        url = str(leader_server.make_url("")).rstrip("/")
        standby = Standby(f"127.0.0.1:{port}", "", f"http://127.0.0.1:{liveness}/healthz")
        await standby.start(lambda: url)
        async with TestClient(TestServer(web.Application())) as scratch:
            pending = asyncio.create_task(
                scratch.session.post(
                    f"http://127.0.0.1:{port}/v1/report/ns/nb", headers={"Authorization": "x"}
                )
            )
            await asyncio.wait_for(arrived.wait(), 10)
            # A hang guard, not a measurement: without the fix this waits out the forward.
            await asyncio.wait_for(standby.stop(), 10)
            answer = await pending
            assert answer.status == 503
