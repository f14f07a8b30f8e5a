"""BatchCluster: one poller per cluster asks the scheduler about all its notebooks at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from batchnotebook_api import API_VERSION, CLUSTERS, GROUP, VERSION
from batchnotebook_api.options import walltime_seconds
from batchnotebook_api.status import ConditionType, Phase, Reason, condition
from batchnotebook_api.times import now, seconds_between, timestamp

from ..clients import SchedulerClient
from ..errors import SchedulerUnavailable
from ..follow import (
    DEFAULT_WALLTIME_WARNING_SECONDS,
    Transition,
    from_job,
    job_output_path,
    needs_log_tail,
    queue_place,
    queue_wait_exceeded,
    unreachable,
    vanished,
    with_log_tail,
    withdrawn_route,
)
from ..hosts import refused_hosts
from ..metrics import count_phases, forget_cluster, observe_status_change
from ..model import JobStatus
from ..registry import registry

log = logging.getLogger(__name__)
MIN_SECONDS_BETWEEN_POLLS = 1.0  # between two rounds' starts, however many reports come
ENDED_FOLLOW_SECONDS = 10  # how long a job's word that Jupyter exited keeps rounds coming
TERMINAL_PHASES = frozenset(phase.value for phase in Phase if phase.terminal)
BEFORE_READY = frozenset(phase.value for phase in Phase if phase.before_ready)
REPORT_CHECK_SECONDS = 0.1  # how often a waiting cluster looks for reports that need a round
VERSION_CHECK_SECONDS = 3600
DEFAULT_AVAILABILITY_INTERVAL_SECONDS = 60
PARALLEL_PATCHES = 16


def followed(notebooks_by_cluster: kopf.Index, name: str) -> list[dict]:
    """A cluster's notebooks as kopf's index has them, less those known to be gone."""
    return [n for n in notebooks_by_cluster.get(name, []) if n["uid"] not in registry.gone]


def forget_the_forgotten(notebooks_by_cluster: kopf.Index) -> None:
    """A ghost kopf's index has dropped (an operator restart lists afresh) needs no filter."""
    indexed = {n["uid"] for notebooks in notebooks_by_cluster.values() for n in notebooks}
    registry.gone.intersection_update(indexed)


async def still_there(notebook: dict) -> bool:
    """Asks the API server whether an indexed notebook exists (the same one, not a namesake)."""
    found = await registry.kube.notebook(notebook["namespace"], notebook["name"])
    if found is None or found["metadata"]["uid"] != notebook["uid"]:
        registry.gone.add(notebook["uid"])
        return False
    return True


@kopf.index(GROUP, VERSION, CLUSTERS)
async def clusters_by_name(name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {name: dict(spec)}


def _ref(notebook: dict) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "BatchNotebook",
        "metadata": {
            "name": notebook["name"],
            "namespace": notebook["namespace"],
            "uid": notebook["uid"],
        },
    }


def _seconds_since(moment: dt.datetime, *stamps: str | None) -> float:
    """Seconds since the first of `stamps` that is set."""
    return seconds_between(next((stamp for stamp in stamps if stamp), None), moment)


async def _apply(notebook: dict, transition: Transition, limit: asyncio.Semaphore) -> None:
    if not transition:
        return
    async with limit:
        if not await registry.kube.patch_notebook_status(
            notebook["namespace"], notebook["name"], transition.status
        ):
            registry.gone.add(notebook["uid"])
            return
        observe_status_change(
            notebook["cluster"], notebook.get("createdAt"), notebook["status"], transition.status
        )
        for type_, reason, message in transition.events:
            await registry.kube.event(_ref(notebook), type_, reason, message)


def max_queue_wait_seconds(spec: dict, profile_name: str | None) -> int | None:
    for profile in spec.get("profiles", []):
        if profile.get("name") == profile_name and profile.get("maxQueueWait"):
            return walltime_seconds(profile["maxQueueWait"])
    return None


def _overdue(spec: dict, notebook: dict, transition: Transition, moment: dt.datetime) -> Transition:
    """The failure of a notebook that waited in the queue longer than its profile allows."""
    max_wait = max_queue_wait_seconds(spec, notebook.get("profile"))
    if max_wait is None:
        return Transition()
    status = {**notebook["status"], **transition.status}
    return queue_wait_exceeded(status, max_wait, moment, notebook["generation"])


async def _settle(
    client: SchedulerClient,
    spec: dict,
    notebook: dict,
    transition: Transition,
    overdue: Transition,
    limit: asyncio.Semaphore,
) -> None:
    """Writes a transition with what it leads to: a job the operator ends (it waited too long,
    or went back to the queue) is cancelled, a started job that failed gets its log's tail into
    the message."""
    status = notebook["status"]
    if transition.cancel_job:
        overdue, transition = transition, withdrawn_route(status, transition)
    if overdue:
        try:
            await client.cancel([status["jobId"]], notebook["unixUser"])
        except SchedulerUnavailable as error:  # the next round tries again
            log.warning("cluster %s: cannot cancel job: %s", client.name, error)
        else:  # a job that never ran has no log to show
            await _apply(
                notebook, Transition({**transition.status, **overdue.status}, overdue.events), limit
            )
            return
    if needs_log_tail(status, transition):
        path = job_output_path(spec.get("jobOutput", "batchnotebook-%j.log"), status["jobId"])
        try:
            tail = await client.log_tail(path, notebook["unixUser"])
        except SchedulerUnavailable as error:
            log.warning("cluster %s: cannot read %s: %s", client.name, path, error)
            tail = ""
        transition = with_log_tail(transition, tail)
    await _apply(notebook, transition, limit)


async def poll(client: SchedulerClient, spec: dict, notebooks: list[dict]) -> int:
    """One round: one queue query for every followed notebook (plus accounting for those the
    queue forgot). Returns how many notebooks are still active. Raises SchedulerUnavailable."""
    active = [
        n
        for n in notebooks
        if n["status"].get("jobName") and not Phase(n["status"].get("phase", "Pending")).terminal
    ]
    if not active:
        return 0
    limit = asyncio.Semaphore(PARALLEL_PATCHES)
    moment = now()
    try:
        listed = await client.query(
            [n["status"]["jobName"] for n in active], [n["status"]["jobId"] for n in active]
        )
    except SchedulerUnavailable as error:
        await asyncio.gather(
            *(
                _apply(n, unreachable(n["status"], str(error), moment, n["generation"]), limit)
                for n in active
            )
        )
        raise

    jobs = {
        n["status"]["jobId"]: job
        for n in active
        if (job := listed.get(n["status"]["jobId"])) is not None and job.owned_by(n["unixUser"])
    }  # by the id recorded at submission and its owner: a job's name is anyone's to choose
    forgotten = [n for n in active if n["status"]["jobId"] not in jobs]
    remembered: dict[str, JobStatus] | None = {}
    if forgotten:
        try:
            owners = {n["status"]["jobId"]: n["unixUser"] for n in forgotten}
            remembered = {
                j.job_id: j
                for j in await client.accounting(job_ids=list(owners))
                if j.owned_by(owners.get(j.job_id, ""))
            }
        except SchedulerUnavailable as error:
            log.warning("cluster %s: accounting did not answer: %s", client.name, error)
            remembered = None  # unknown, not gone

    found = {**(remembered or {}), **jobs}  # the queue's word first, then accounting's
    # The execHosts policy, each host resolved once a round: a refused one never reaches a URL.
    # Only for notebooks that have no URL yet (a Ready one keeps the host its URL was built from).
    unrouted = {
        n["status"]["jobId"] for n in active if n["status"].get("phase", "Pending") in BEFORE_READY
    }
    refused = await refused_hosts([j for i, j in found.items() if i in unrouted], spec)
    changes, still_active = [], 0
    for notebook in active:
        status = notebook["status"]
        job = found.get(status["jobId"])
        if job is not None:
            transition = from_job(
                status,
                job,
                moment,
                spec.get("hostRewrite"),
                notebook["generation"],
                spec.get("walltimeWarningSeconds", DEFAULT_WALLTIME_WARNING_SECONDS),
                refused_hosts=refused,
            )
            still_active += not job.state.ended
        elif remembered is not None:
            transition = vanished(
                status,
                status["jobId"],
                _seconds_since(moment, status.get("lastSeenAt"), status.get("submittedAt")),
                moment,
                notebook["generation"],
            )
        else:
            transition = Transition()
        overdue = _overdue(spec, notebook, transition, moment)
        if transition or overdue:  # a round costs nothing for a notebook that did not change
            changes.append(_settle(client, spec, notebook, transition, overdue, limit))
    await asyncio.gather(*changes)
    return still_active


async def snapshot(client: SchedulerClient, notebooks: list[dict]) -> dict:
    """One availability snapshot: the cluster's status fields, and each waiting notebook's place
    in its queue written where it changed. A scheduler that does not answer changes nothing
    (the last snapshot stays, with its time): {}."""
    try:
        taken = await client.availability()
    except SchedulerUnavailable as error:
        log.warning("cluster %s: no availability snapshot: %s", client.name, error)
        return {}
    limit = asyncio.Semaphore(PARALLEL_PATCHES)
    await asyncio.gather(
        *(_apply(n, queue_place(n["status"], taken.places), limit) for n in notebooks)
    )
    return {
        "availabilityTime": timestamp(taken.taken_at),
        "partitions": [partition.as_status() for partition in taken.partitions],
    }


def wanting_a_round(notebooks: Iterable[dict], moment: dt.datetime) -> set[tuple[str, str]]:
    """(uid, why) of each notebook whose job said something only the scheduler can confirm:
    "reported", its port came before any poll saw the job run (or while a round was writing the
    host), so only the next round's word on the execution host stands between it and Ready;
    "ended", Jupyter exited, so the job is ending and the round tells how (for ENDED_FOLLOW_SECONDS:
    the scheduler may still show the job running, or completing, for a moment)."""
    wanted = set()
    for n in notebooks:  # ten times a second over every notebook: kept cheap
        status = n["status"]
        phase = status.get("phase", "Pending")
        if phase in TERMINAL_PHASES:
            continue
        if status.get("reportedPort") and phase != Phase.READY.value:
            wanted.add((n["uid"], "reported"))
        ended = status.get("endReportedAt")
        if ended and seconds_between(ended, moment) < ENDED_FOLLOW_SECONDS:
            wanted.add((n["uid"], "ended"))
    return wanted


async def next_round(
    stopped: kopf.DaemonStopped,
    notebooks: Callable[[], Iterable[dict]],
    due: float,
    earliest: float,
    hurried: set[tuple[str, str]],
) -> None:
    """Wait until the next round is due, or bring it forward (not before `earliest`) when a job
    said something only a round can confirm (wanting_a_round): Jupyter usually listens within the
    interval that starts the job, and its Ready would otherwise wait for the rest of that
    interval; an ended job would show as running for as long.  A port report brings one round
    forward, so one that never gets a host costs one extra query, not one a second; an end, a
    round a second until the scheduler says how the job ended (a few seconds at most). Reports
    arriving together share the round."""
    # Forget the done and the deleted.
    hurried.intersection_update(wanting_a_round(notebooks(), now()))
    while not stopped and (moment := time.monotonic()) < due:
        if moment >= earliest:
            waiting = wanting_a_round(notebooks(), now()) - hurried
            if waiting:
                hurried |= {want for want in waiting if want[1] == "reported"}
                return
        await stopped.wait(min(REPORT_CHECK_SECONDS, due - moment))


@kopf.daemon(GROUP, VERSION, CLUSTERS, cancellation_timeout=5)
async def follow_cluster(
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    notebooks_by_cluster: kopf.Index,
    **_: Any,
) -> None:
    checked_version_at = float("-inf")  # the first round asks, however young the monotonic clock
    snapshot_at = float("-inf")
    # Without the "Reachable" condition of 0.1.0, now SchedulerReachable as on a BatchNotebook.
    conditions = [c for c in status.get("conditions", []) if c.get("type") != "Reachable"]
    cluster_status: dict = {"conditions": conditions}
    hurried: set[tuple[str, str]] = set()  # reports that already brought a round forward
    try:
        while not stopped:
            client = registry.client(name, dict(spec))
            started = time.monotonic()
            forget_the_forgotten(notebooks_by_cluster)
            count_phases(name, followed(notebooks_by_cluster, name))
            update: dict = {"observedGeneration": meta.get("generation")}
            answered = False
            try:
                if started - checked_version_at > VERSION_CHECK_SECONDS:
                    update["schedulerVersion"] = await client.version()
                    checked_version_at = started
                update["activeJobs"] = await poll(
                    client, dict(spec), followed(notebooks_by_cluster, name)
                )
                answered = True
                reachable = condition(
                    cluster_status["conditions"],
                    ConditionType.SCHEDULER_REACHABLE,
                    True,
                    Reason.ANSWERED,
                    "the scheduler answered the last query",
                    meta.get("generation"),
                    now(),
                )
            except SchedulerUnavailable as error:
                reachable = condition(
                    cluster_status["conditions"],
                    ConditionType.SCHEDULER_REACHABLE,
                    False,
                    Reason.NO_ANSWER,
                    str(error)[:500],
                    meta.get("generation"),
                    now(),
                )
            except Exception:  # one bad round must not stop following the cluster
                log.exception("cluster %s: poll failed", name)
                reachable = cluster_status["conditions"]
            # Its own cadence, and never in a round the scheduler was silent: a snapshot changes
            # neither a notebook's phase nor the SchedulerReachable condition.
            every = float(
                spec.get("availabilityIntervalSeconds", DEFAULT_AVAILABILITY_INTERVAL_SECONDS)
            )
            if answered and every > 0 and started - snapshot_at >= every:
                snapshot_at = started
                try:
                    update |= await snapshot(client, followed(notebooks_by_cluster, name))
                except Exception:  # a snapshot must not stop following the cluster
                    log.exception("cluster %s: availability snapshot failed", name)
            elapsed = time.monotonic() - started
            update |= {
                "lastPollTime": timestamp(now()),
                "lastPollDurationSeconds": round(elapsed, 3),
                "conditions": reachable,
            }
            cluster_status |= update
            try:
                await registry.kube.patch_cluster_status(name, update)
            except Exception:
                log.exception("cluster %s: cannot write status", name)

            interval = float(spec.get("pollIntervalSeconds", 10))
            await next_round(
                stopped,
                lambda: followed(notebooks_by_cluster, name),
                started + max(interval, elapsed + MIN_SECONDS_BETWEEN_POLLS),
                started + MIN_SECONDS_BETWEEN_POLLS,
                hurried,
            )
    finally:
        await registry.forget(name)  # a deleted cluster's connection goes with it
        forget_cluster(name)


@kopf.on.delete(GROUP, VERSION, CLUSTERS)
async def keep_while_in_use(name: str, notebooks_by_cluster: kopf.Index, **_: Any) -> None:
    """A cluster goes only after its notebooks: deleting them cancels their jobs, which needs the
    cluster's connection and commands (like a PersistentVolumeClaim in use)."""
    # Each confirmed with the API server (the index may hold ghosts, see registry.gone), up to
    # five for the message.
    users: list[str] = []
    for notebook in followed(notebooks_by_cluster, name):
        if await still_there(notebook):
            users.append(f"{notebook['namespace']}/{notebook['name']}")
            if len(users) == 5:
                break
    if users:
        raise kopf.TemporaryError(
            f"BatchNotebooks still use this cluster: {', '.join(users)}"
            + (" and more" if len(users) == 5 else ""),
            delay=5,
        )
