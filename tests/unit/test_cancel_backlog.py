"""The cancel backlog (backlog.py): a notebook deleted while the scheduler is silent, or whose job
does not end, goes at once and leaves its job in the cluster's status.pendingCancels, written
before the finalizer is released; the cluster's rounds cancel it by its recorded id as its
recorded owner and drop it only once the scheduler says it ended or neither the queue nor
accounting knows it."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import random
from collections.abc import Callable, Iterable

import kopf
import pytest
from fake_clients import QueueOnlyClient
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_operator import backlog, metrics
from batchnotebook_operator.backlog import PendingCancel
from batchnotebook_operator.cli import doctor
from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.handlers import clusters, notebooks
from batchnotebook_operator.model import JobState, JobStatus
from batchnotebook_operator.poller import ClusterPoller
from batchnotebook_operator.registry import registry
from batchnotebook_operator.schedulers import BACKENDS

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
CREATED = "2026-12-01T09:00:00Z"
CLUSTER = {"scheduler": "slurm", "pollIntervalSeconds": 2}


def tag(uid: str) -> str:
    return f"bnb-{uid}"


def job(job_id: str, uid: str, user: str, state: JobState = JobState.RUNNING) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        state=state,
        raw_state=state.value.upper(),
        name=tag(uid),
        user=user,
        submitted_at=NOW - dt.timedelta(minutes=30),
    )


def entry(uid: str, job_id: str = "", user: str = "alice") -> PendingCancel:
    meta = {"uid": uid, "namespace": "ns", "name": f"nb-{uid}", "creationTimestamp": CREATED}
    return backlog.pending_cancel(meta, user, tag(uid), job_id, NOW)


class Site:
    """Every user's jobs as the queue and accounting list them, and every cancel asked."""

    def __init__(self, queue: Iterable[JobStatus] = (), accounting: Iterable[JobStatus] = ()):
        self.queue, self.accounting = list(queue), list(accounting)
        self.cancels: list[tuple[tuple[str, ...], str]] = []
        self.silent = False  # every command times out
        self.accounting_silent = False
        self.cancel_silent = False
        self.ends_on_cancel = True


class FakeClient(QueueOnlyClient):
    """The client contract over a Site: the queue by tag, accounting by id or tag."""

    name = "c"

    def __init__(self, site: Site) -> None:
        self.site, self.spec = site, CLUSTER
        self.scheduler = BACKENDS["slurm"]()
        self.turns = asyncio.Semaphore(1)

    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        if self.site.silent:
            raise SchedulerUnavailable("slurm_load_jobs error: Unable to contact slurm controller")
        wanted = set(tags)
        return {j.job_id: j for j in self.site.queue if j.name in wanted}

    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
        if self.site.silent or self.site.accounting_silent:
            raise SchedulerUnavailable("sacct: slurmdbd is not responding")
        return [j for j in self.site.accounting if j.job_id in job_ids or j.name in tags]

    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        if self.site.silent or self.site.cancel_silent:
            raise SchedulerUnavailable("scancel: Unable to contact slurm controller")
        ids = tuple(job_ids)
        self.site.cancels.append((ids, user))
        if self.site.ends_on_cancel:  # as Slurm: only the owner's own jobs end
            self.site.queue = [
                j if j.job_id not in ids or j.user != user else job_ended(j)
                for j in self.site.queue
            ]


def job_ended(j: JobStatus) -> JobStatus:
    return JobStatus(j.job_id, JobState.CANCELLED, "CANCELLED", j.name, j.user)


class FakeKube:
    """One BatchCluster "c" with a resourceVersion, merge-patched as the API server does; and
    every Event and notebook status patch."""

    def __init__(self) -> None:
        self.cluster_body: dict = {
            "metadata": {"name": "c", "uid": "uid-c", "resourceVersion": "1"},
            "status": {},
        }
        self.events: list[tuple[str, str, str, str, str]] = []
        self.writes = 0
        self.fail_writes: int | None = None  # the API server fails this many writes
        self.before_write: Callable[[], None] | None = None  # another writer, mid-change

    @property
    def pending(self) -> list[dict]:
        return self.cluster_body["status"].get("pendingCancels") or []

    async def cluster(self, name: str) -> dict | None:
        return copy.deepcopy(self.cluster_body) if name == "c" else None

    async def patch_cluster_status(self, name, status, resource_version=None) -> dict:
        if self.before_write is not None:
            self.before_write()
        if self.fail_writes:
            self.fail_writes -= 1
            raise ApiException(status=500, reason="etcdserver: request timed out")
        meta = self.cluster_body["metadata"]
        if resource_version is not None and resource_version != meta["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        for key, value in status.items():
            if value is None:
                self.cluster_body["status"].pop(key, None)
            else:
                self.cluster_body["status"][key] = copy.deepcopy(value)
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        self.writes += 1
        return copy.deepcopy(self.cluster_body)

    async def patch_notebook_status(self, namespace, name, status) -> bool:
        return True

    async def event(self, ref, type_, reason, message, namespace="default") -> None:
        where = ref["metadata"].get("namespace") or namespace
        self.events.append((ref.get("kind", "BatchNotebook"), where, type_, reason, message))

    def reasons(self, kind: str) -> list[str]:
        return [reason for k, _, _, reason, _ in self.events if k == kind]

    def concurrent_add(self, pending: PendingCancel) -> None:
        """Another writer adds `pending` right after the next read (once)."""

        def add() -> None:
            self.before_write = None
            self.cluster_body["status"].setdefault("pendingCancels", []).append(pending.as_status())
            meta = self.cluster_body["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

        self.before_write = add


@pytest.fixture
def kube(monkeypatch) -> FakeKube:
    fake = FakeKube()
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    monkeypatch.setenv("BATCHNOTEBOOK_NAMESPACE", "operator-ns")
    return fake


# --- the entries, without I/O -----------------------------------------------------------------


def test_an_entry_says_what_the_round_needs_and_reads_back_the_same():
    e = entry("u1", "42")
    assert e.as_status() == {
        "uid": "u1",
        "notebook": "ns/nb-u1",
        "unixUser": "alice",
        "jobName": "bnb-u1",
        "jobId": "42",
        "notebookCreationTime": CREATED,
        "sinceTime": "2026-12-01T10:00:00Z",
    }
    assert PendingCancel.from_status(e.as_status()) == e
    assert "jobId" not in entry("u2").as_status()  # deleted before its id was recorded
    assert e.describe() == "job 42 of ns/nb-u1 (alice)"


def test_recording_twice_changes_nothing_and_other_entries_stay():
    first = backlog.with_entry([], entry("u1", "42"))
    assert first == [entry("u1", "42").as_status()]
    assert backlog.with_entry(first, entry("u1", "42")) is None
    both = backlog.with_entry(first, entry("u2", "43"))
    assert [e["uid"] for e in both] == ["u1", "u2"]
    assert backlog.without(both, ["u1"]) == [entry("u2", "43").as_status()]
    assert backlog.without(both, ["u3"]) is None
    assert backlog.without(both, ["u1", "u2"]) == []


@pytest.mark.parametrize(
    ("state", "done"),
    [
        (JobState.PENDING, False),
        (JobState.RUNNING, False),
        (JobState.UNKNOWN, False),
        (JobState.COMPLETING, True),
        (JobState.CANCELLED, True),
        (JobState.FINISHED, True),
        (JobState.FAILED, True),
    ],
)
def test_only_an_ended_or_unknown_job_needs_no_more_cancelling(state, done):
    assert bool(backlog.needs_no_cancel(job("42", "u1", "alice", state))) is done
    assert backlog.needs_no_cancel(None) == "is unknown to the queue and to accounting"


def test_cancels_are_grouped_by_owner():
    entries = [entry("u1", "1"), entry("u2", "2", "bob"), entry("u3", "3"), entry("u4", "4")]
    jobs = {
        "u1": job("1", "u1", "alice"),
        "u2": job("2", "u2", "bob", JobState.PENDING),
        "u3": job("3", "u3", "alice", JobState.CANCELLED),
        "u4": None,
    }
    assert backlog.to_cancel(entries, jobs) == {"alice": ["1"], "bob": ["2"]}


# --- a round's pass over the backlog --------------------------------------------------------


async def test_a_live_job_is_cancelled_and_kept_until_the_scheduler_says_it_ended():
    site = Site([job("42", "u1", "alice")])
    site.ends_on_cancel = False  # it takes a while
    client = FakeClient(site)
    assert await backlog.work_off(client, [entry("u1", "42")]) == {}
    assert site.cancels == [(("42",), "alice")]
    site.queue = [job("42", "u1", "alice", JobState.COMPLETING)]
    assert await backlog.work_off(client, [entry("u1", "42")]) == {"u1": "has ended (COMPLETING)"}
    assert len(site.cancels) == 1


async def test_a_job_only_accounting_remembers_or_nobody_knows_is_done():
    site = Site(accounting=[job("42", "u1", "alice", JobState.CANCELLED)])
    done = await backlog.work_off(FakeClient(site), [entry("u1", "42"), entry("u2", "43")])
    assert done == {
        "u1": "has ended (CANCELLED)",
        "u2": "is unknown to the queue and to accounting",
    }
    assert site.cancels == []


@pytest.mark.parametrize("silent", ["silent", "accounting_silent"])
async def test_no_answer_drops_nothing(silent):
    site = Site()  # the job is in neither: only an answer could say so
    setattr(site, silent, True)
    with pytest.raises(SchedulerUnavailable):
        await backlog.work_off(FakeClient(site), [entry("u1", "42")])


async def test_a_refused_cancel_keeps_the_entry():
    site = Site([job("42", "u1", "alice")])
    site.cancel_silent = True
    assert await backlog.work_off(FakeClient(site), [entry("u1", "42")]) == {}


async def test_without_an_id_only_its_owners_job_of_its_name_is_found():
    site = Site([job("50", "u1", "mallory"), job("51", "u1", "alice")])
    assert await backlog.work_off(FakeClient(site), [entry("u1")]) == {}
    assert site.cancels == [(("51",), "alice")]


# --- ATTACK: an entry's job is its recorded id, as its recorded owner -------------------------


async def test_attack_a_reused_id_or_a_namesake_is_never_cancelled():
    """Mallory's job now has the id alice's had (ids wrap), and jobs named like alice's run as
    mallory and as alice under other ids: the entry is done (its job is gone), nothing is
    cancelled."""
    site = Site(
        [
            job("42", "other", "mallory"),
            job("77", "u1", "mallory"),
            job("78", "u1", "alice"),
        ]
    )
    done = await backlog.work_off(FakeClient(site), [entry("u1", "42")])
    assert done == {"u1": "is unknown to the queue and to accounting"}
    assert site.cancels == []


USERS = ["alice", "bob", "mallory"]


def any_job(pick: random.Random) -> JobStatus:
    """A job of anyone, named as one of the entries' or not, under an id that may be one's."""
    uid = f"u{pick.randint(0, 7)}"
    states = [JobState.PENDING, JobState.RUNNING, JobState.CANCELLED, JobState.COMPLETING]
    return job(str(pick.randint(1, 30)), uid, pick.choice(USERS), pick.choice(states))


async def test_attack_every_cancel_is_a_recorded_id_as_its_recorded_owner():
    cancelled = 0
    for seed in range(200):
        pick = random.Random(seed)
        entries = [
            entry(f"u{i}", str(pick.randint(1, 30)) if pick.random() < 0.8 else "", user)
            for i, user in enumerate(pick.choices(USERS[:2], k=pick.randint(1, 6)))
        ]
        site = Site(
            [any_job(pick) for _ in range(pick.randint(0, 12))],
            [any_job(pick) for _ in range(pick.randint(0, 6))],
        )
        allowed = {(e.job_id, e.unix_user) for e in entries if e.job_id}
        # An entry without an id: only a job of its name that its user owns.
        by_name = {(e.job_name, e.unix_user) for e in entries if not e.job_id}
        allowed |= {
            (j.job_id, j.user) for j in site.queue + site.accounting if (j.name, j.user) in by_name
        }
        await backlog.work_off(FakeClient(site), entries)
        asked = {(job_id, user) for ids, user in site.cancels for job_id in ids}
        assert asked <= allowed, (seed, asked - allowed)
        cancelled += len(asked)
    assert cancelled > 20  # the draws do reach the cancels


# --- the status: read, changed, written at the version read -----------------------------------


async def test_a_change_that_meets_another_writer_is_made_again(kube):
    kube.cluster_body["status"]["pendingCancels"] = [entry("u1", "41").as_status()]
    kube.concurrent_add(entry("u2", "42"))
    await backlog.change(kube, "c", lambda entries: backlog.without(entries, ["u1"]))
    assert [e["uid"] for e in kube.pending] == ["u2"]  # the other writer's entry stays


async def test_conflicts_without_end_give_up_loudly(kube):
    def always() -> None:
        meta = kube.cluster_body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    kube.before_write = always
    with pytest.raises(ApiException) as raised:
        await backlog.change(kube, "c", lambda entries: backlog.with_entry(entries, entry("u1")))
    assert raised.value.status == 409 and kube.writes == 0


async def test_an_emptied_backlog_leaves_the_status(kube):
    kube.cluster_body["status"]["pendingCancels"] = [entry("u1", "41").as_status()]
    await backlog.change(kube, "c", lambda entries: backlog.without(entries, ["u1"]))
    assert "pendingCancels" not in kube.cluster_body["status"]


async def test_settle_drops_what_ended_with_an_event_on_the_cluster(kube):
    kube.cluster_body["status"]["pendingCancels"] = [
        entry("u1", "41").as_status(),
        entry("u2", "42").as_status(),
    ]
    site = Site([job("41", "u1", "alice", JobState.CANCELLED), job("42", "u2", "alice")])
    left = await backlog.settle(
        kube, FakeClient(site), "c", backlog.entries_of(kube.cluster_body["status"])
    )
    assert [e.uid for e in left] == ["u2"] and [e["uid"] for e in kube.pending] == ["u2"]
    assert kube.events == [
        (
            "BatchCluster",
            "operator-ns",
            "Normal",
            "CancelConfirmed",
            "job 41 of ns/nb-u1 (alice) has ended (CANCELLED)",
        )
    ]
    assert site.cancels == [(("42",), "alice")]


# --- the delete handler -------------------------------------------------------------------------


def notebook(status: dict, uid: str = "u1") -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {
                "name": f"nb-{uid}",
                "namespace": "ns",
                "uid": uid,
                "creationTimestamp": CREATED,
            },
            "spec": {"clusterName": "c", "unixUser": "alice"},
            "status": status,
        }
    )


async def delete(body: kopf.Body, site: Site, monkeypatch, retry: int = 0) -> None:
    client = FakeClient(site)
    monkeypatch.setattr(registry, "client", lambda *_: client)
    await notebooks.cancel(
        body=body,
        spec=body.spec,
        status=body.status,
        uid=body.meta["uid"],
        retry=retry,
        clusters_by_name={"c": [CLUSTER]},
        logger=logging.getLogger("test"),
    )


async def test_a_silent_scheduler_hands_the_job_over_at_once(kube, monkeypatch):
    site = Site([job("42", "u1", "alice")])
    site.silent = True
    body = notebook({"jobId": "42", "submitAttemptedAt": CREATED})
    await delete(body, site, monkeypatch)  # returns: kopf releases the finalizer
    [pending] = kube.pending
    assert pending | {"sinceTime": "t"} == entry("u1", "42").as_status() | {"sinceTime": "t"}
    assert kube.reasons("BatchCluster") == ["CancelPending"]
    assert kube.reasons("BatchNotebook") == ["CancelPending"]
    assert "status.pendingCancels" in kube.events[-1][-1]

    await delete(body, site, monkeypatch, retry=1)  # an operator killed before the release
    assert len(kube.pending) == 1 and kube.reasons("BatchCluster") == ["CancelPending"]


async def test_the_finalizer_stays_until_the_backlog_has_the_job(kube, monkeypatch):
    site = Site()
    site.silent = True
    kube.fail_writes = 1
    with pytest.raises(ApiException):  # kopf retries; the notebook stays until it is written
        await delete(notebook({"jobId": "42"}), site, monkeypatch)
    assert kube.pending == []
    await delete(notebook({"jobId": "42"}), site, monkeypatch, retry=1)
    assert [e["jobId"] for e in kube.pending] == ["42"]


async def test_a_job_that_does_not_end_is_waited_for_then_handed_over(kube, monkeypatch):
    site = Site([job("42", "u1", "alice")])
    site.ends_on_cancel = False
    body = notebook({"jobId": "42"})
    with pytest.raises(kopf.TemporaryError, match="still RUNNING"):
        await delete(body, site, monkeypatch)
    assert kube.pending == []
    await delete(body, site, monkeypatch, retry=notebooks.CANCEL_ATTEMPTS - 1)
    assert [e["jobId"] for e in kube.pending] == ["42"]


async def test_a_confirmed_cancel_needs_no_backlog(kube, monkeypatch):
    site = Site([job("42", "u1", "alice")])
    await delete(notebook({"jobId": "42"}), site, monkeypatch)
    assert kube.pending == [] and kube.reasons("BatchNotebook") == ["Cancelled"]


async def test_without_a_submission_nothing_waits(kube, monkeypatch):
    site = Site()
    site.silent = True
    await delete(notebook({}), site, monkeypatch)
    assert kube.pending == [] and kube.events == []


async def test_a_job_id_never_recorded_is_handed_over_by_name(kube, monkeypatch):
    site = Site()
    site.silent = True
    await delete(notebook({"submitAttemptedAt": CREATED}), site, monkeypatch)
    [pending] = kube.pending
    assert "jobId" not in pending
    assert (pending["jobName"], pending["notebookCreationTime"]) == ("bnb-u1", CREATED)


# --- the rounds, the cluster's deletion, doctor, metrics --------------------------------------


async def test_a_round_works_the_backlog_off_and_says_when_the_scheduler_is_silent(kube):
    kube.cluster_body["status"]["pendingCancels"] = [entry("u1", "42").as_status()]
    site = Site([job("42", "u1", "alice")])
    site.silent = True
    poller = ClusterPoller("c", [])
    pending = backlog.entries_of(kube.cluster_body["status"])
    update = await poller.round(FakeClient(site), CLUSTER, 1, [], pending)
    reachable = {c["type"]: c["status"] for c in update["conditions"]}
    assert reachable["SchedulerReachable"] == "False"
    assert "pendingCancels" not in update  # written apart, at the version read
    assert len(kube.pending) == 1 and site.cancels == []

    site.silent = False
    await poller.round(FakeClient(site), CLUSTER, 1, [], pending)  # cancels
    await poller.round(FakeClient(site), CLUSTER, 1, [], pending)  # sees it ended
    assert site.cancels == [(("42",), "alice")]
    assert kube.pending == [] and kube.reasons("BatchCluster") == ["CancelConfirmed"]


async def test_a_cluster_goes_only_after_its_backlog(kube, monkeypatch):
    site = Site([job("42", "u1", "alice")])
    site.ends_on_cancel = False
    monkeypatch.setattr(registry, "client", lambda *_: FakeClient(site))
    status = {"pendingCancels": [entry("u1", "42").as_status()]}
    kube.cluster_body["status"] = copy.deepcopy(status)
    with pytest.raises(kopf.TemporaryError, match="1 jobs of deleted notebooks wait"):
        await clusters.keep_while_in_use(
            name="c", spec=CLUSTER, status=status, notebooks_by_cluster={}
        )
    assert site.cancels == [(("42",), "alice")]
    site.queue = [job("42", "u1", "alice", JobState.CANCELLED)]
    await clusters.keep_while_in_use(name="c", spec=CLUSTER, status=status, notebooks_by_cluster={})
    assert kube.pending == []


def test_doctor_names_the_pending_cancels():
    assert doctor.check_pending_cancels("c", {}, NOW) == []
    status = {"pendingCancels": [entry(f"u{i}", str(i)).as_status() for i in range(5)]}
    [check] = doctor.check_pending_cancels("c", status, NOW + dt.timedelta(minutes=12))
    assert check.level is doctor.Level.WARN
    assert "5 jobs of deleted notebooks wait to be cancelled, the oldest for 12m" in check.detail
    assert check.detail.endswith("job 2 of ns/nb-u2 (alice) and 2 more")


def test_the_backlog_size_is_a_gauge():
    metrics.count_pending_cancels("c", 3)
    assert metrics.PENDING_CANCELS.labels("c")._value.get() == 3
    metrics.forget_cluster("c")
    assert ("c",) not in metrics.PENDING_CANCELS._metrics
