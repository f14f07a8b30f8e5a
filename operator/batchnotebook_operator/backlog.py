"""The cancel backlog: jobs of deleted notebooks that the scheduler has not yet confirmed ended,
kept in their BatchCluster's status.pendingCancels until it does.

Deleting a notebook cancels its job (handlers/notebooks.py). When the scheduler does not answer,
or the job does not end, the job is recorded here and the notebook goes: nothing stays
Terminating, and the record is written before kopf drops the finalizer, so that an operator
killed in between still has the job in one of the two. Each round of the cluster (poller.py) looks
the backlog's jobs up in one query, cancels those still alive, each by its recorded id as its
recorded owner, and drops an entry only once the scheduler says its job ended or neither the queue
nor accounting knows it: a silent scheduler drops nothing.

Two writers change the list (deletions add, rounds drop) and a merge patch replaces a list whole:
each change is read, made and written at the resourceVersion it was read at, and made again after
a conflict. The rounds' other status writes never name the list.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import API_VERSION
from batchnotebook_api.times import parse_timestamp, timestamp

from .clients import SchedulerClient
from .errors import SchedulerUnavailable
from .kube import Kube
from .model import JobState, JobStatus
from .transports import operator_namespace

log = logging.getLogger(__name__)
PENDING_CANCELS = "pendingCancels"
CLUSTER_KIND = "BatchCluster"
WRITE_ATTEMPTS = 5  # conflicts in a row (each a round's status write in between) before giving up


@dataclass(frozen=True)
class PendingCancel:
    """One entry of status.pendingCancels."""

    uid: str  # the deleted notebook's: the entry's key
    notebook: str  # namespace/name
    unix_user: str
    job_name: str
    since: str
    job_id: str = ""  # "": deleted before its job id was recorded; found by name and owner then
    notebook_created: str = ""

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> PendingCancel:
        return cls(
            uid=entry["uid"],
            notebook=entry["notebook"],
            unix_user=entry["unixUser"],
            job_name=entry["jobName"],
            since=entry["sinceTime"],
            job_id=entry.get("jobId", ""),
            notebook_created=entry.get("notebookCreationTime", ""),
        )

    def as_status(self) -> dict[str, str]:
        fields = {
            "uid": self.uid,
            "notebook": self.notebook,
            "unixUser": self.unix_user,
            "jobName": self.job_name,
            "jobId": self.job_id,
            "notebookCreationTime": self.notebook_created,
            "sinceTime": self.since,
        }
        return {key: value for key, value in fields.items() if value}

    def describe(self) -> str:
        """How messages name the job."""
        job = f"job {self.job_id}" if self.job_id else f"the job named {self.job_name}"
        return f"{job} of {self.notebook} ({self.unix_user})"


def pending_cancel(
    meta: Mapping[str, Any], unix_user: str, tag: str, job_id: str, moment: dt.datetime
) -> PendingCancel:
    """The entry for a notebook being deleted (`meta`, its metadata) whose job `job_id` ("" if it
    has none recorded), named `tag`, is still to be cancelled as of `moment`."""
    return PendingCancel(
        uid=meta["uid"],
        notebook=f"{meta['namespace']}/{meta['name']}",
        unix_user=unix_user,
        job_name=tag,
        since=timestamp(moment),
        job_id=job_id,
        notebook_created=meta.get("creationTimestamp") or "",
    )


def entries_of(status: Mapping[str, Any]) -> list[PendingCancel]:
    return [PendingCancel.from_status(entry) for entry in status.get(PENDING_CANCELS) or []]


def with_entry(entries: list[dict], entry: PendingCancel) -> list[dict] | None:
    """The backlog with `entry` added; None if it holds that notebook's already: recording twice
    (a deletion retried after an operator restart) changes nothing."""
    if any(existing.get("uid") == entry.uid for existing in entries):
        return None
    return [*entries, entry.as_status()]


def without(entries: list[dict], done: Iterable[str]) -> list[dict] | None:
    """The backlog less the entries of the notebooks `done` (uids); None if it holds none."""
    gone = set(done)
    kept = [entry for entry in entries if entry.get("uid") not in gone]
    return kept if len(kept) < len(entries) else None


def needs_no_cancel(job: JobStatus | None) -> str:
    """Why an entry's job (as looked_up found it) needs no more cancelling, or "" if it does:
    it ended (COMPLETING: the scheduler ended it and is cleaning up after it), or neither the
    queue nor accounting knows it as its owner's."""
    if job is None:
        return "is unknown to the queue and to accounting"
    if job.state.ended or job.state is JobState.COMPLETING:
        return f"has ended ({job.raw_state or job.state.value})"
    return ""


def to_cancel(
    entries: Iterable[PendingCancel], jobs: Mapping[str, JobStatus | None]
) -> dict[str, list[str]]:
    """By owner, the ids of the entries' jobs still alive (`jobs` by notebook uid, as looked_up
    found them: each its entry's recorded id, owned by its entry's recorded user)."""
    by_owner: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        job = jobs.get(entry.uid)
        if job is not None and not needs_no_cancel(job):
            by_owner[entry.unix_user].append(job.job_id)
    return dict(by_owner)


async def looked_up(
    client: SchedulerClient, entries: list[PendingCancel]
) -> dict[str, JobStatus | None]:
    """Each entry's job by notebook uid, None where the scheduler does not know it as the entry's
    user's: by its recorded id (queue and accounting asked once for them all); without one, by
    name as the deletion looks for it (only a job of its user submitted after the notebook was
    created). Raises SchedulerUnavailable."""
    by_id = [entry for entry in entries if entry.job_id]
    listed = (
        await client.jobs([e.job_id for e in by_id], [e.job_name for e in by_id]) if by_id else {}
    )
    found: dict[str, JobStatus | None] = {}
    for entry in by_id:
        job = listed.get(entry.job_id)
        found[entry.uid] = job if job is not None and job.owned_by(entry.unix_user) else None
    for entry in entries:
        if not entry.job_id:
            created = parse_timestamp(entry.notebook_created) if entry.notebook_created else None
            found[entry.uid] = await client.find(entry.job_name, entry.unix_user, created)
    return found


async def work_off(client: SchedulerClient, entries: list[PendingCancel]) -> dict[str, str]:
    """One pass over a cluster's backlog: the entries whose jobs need no more cancelling (uid →
    why), every other one's job cancelled as its owner. Raises SchedulerUnavailable when the
    look-up gets no answer: nothing is dropped then."""
    jobs = await looked_up(client, entries)
    for owner, job_ids in to_cancel(entries, jobs).items():
        try:
            await client.cancel(job_ids, owner)
        except SchedulerUnavailable as error:  # kept: the next round tries again
            log.warning(
                "cluster %s: cannot cancel %s as %s: %s", client.name, job_ids, owner, error
            )
    return {entry.uid: why for entry in entries if (why := needs_no_cancel(jobs[entry.uid]))}


async def change(
    kube: Kube, cluster: str, edit: Callable[[list[dict]], list[dict] | None]
) -> dict | None:
    """Edit a cluster's backlog: read it, `edit` it, and write it only if the cluster has not
    changed since the read (its resourceVersion), all again after a conflict. Returns the cluster
    as written, None if `edit` changed nothing (None from it). LookupError: no such cluster."""
    attempt = 0
    while True:
        attempt += 1
        body = await kube.cluster(cluster)
        if body is None:
            raise LookupError(f"there is no BatchCluster {cluster}")
        edited = edit(list(body.get("status", {}).get(PENDING_CANCELS) or []))
        if edited is None:
            return None
        try:
            return await kube.patch_cluster_status(
                cluster, {PENDING_CANCELS: edited or None}, body["metadata"]["resourceVersion"]
            )
        except ApiException as error:
            if error.status != 409 or attempt >= WRITE_ATTEMPTS:
                raise


def cluster_ref(body: Mapping[str, Any]) -> dict:
    """What an Event about the cluster `body` names."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": CLUSTER_KIND,
        "metadata": {"name": meta["name"], "uid": meta.get("uid")},
    }


async def record(kube: Kube, cluster: str, entry: PendingCancel, problem: str) -> None:
    """Put `entry` in the cluster's backlog, with a Warning Event on the cluster if it is new
    there. LookupError: no such cluster."""
    written = await change(kube, cluster, lambda entries: with_entry(entries, entry))
    if written is not None:
        await kube.event(
            cluster_ref(written),
            "Warning",
            "CancelPending",
            f"{entry.describe()} waits to be cancelled: {problem}",
            namespace=operator_namespace(),
        )


async def settle(
    kube: Kube, client: SchedulerClient, cluster: str, entries: list[PendingCancel]
) -> list[PendingCancel]:
    """One pass over `entries` (the cluster's backlog as last seen): those whose jobs need no more
    cancelling are dropped, each with a Normal Event CancelConfirmed on the cluster. Returns the
    entries left. Raises SchedulerUnavailable (nothing dropped)."""
    if not entries:
        return []
    done = await work_off(client, entries)
    dropped: list[str] = []

    def drop(current: list[dict]) -> list[dict] | None:
        dropped[:] = [entry["uid"] for entry in current if entry.get("uid") in done]
        return without(current, done)

    written = await change(kube, cluster, drop) if done else None
    if written is not None:
        for entry in entries:
            if entry.uid in dropped:
                await kube.event(
                    cluster_ref(written),
                    "Normal",
                    "CancelConfirmed",
                    f"{entry.describe()} {done[entry.uid]}",
                    namespace=operator_namespace(),
                )
    return [entry for entry in entries if entry.uid not in done]
