"""One round over a cluster's notebooks: one queue query for all of them (plus accounting for
those the queue forgot), each answer turned into a transition by follow.py, and what a transition
leads to carried out (a cancel, the job log's tail, the status patch and its Events); and the
availability snapshot. poller.py decides when rounds happen."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from batchnotebook_api import API_VERSION, NOTEBOOK_KIND
from batchnotebook_api.options import walltime_seconds
from batchnotebook_api.status import Phase
from batchnotebook_api.times import now, seconds_between, timestamp

from .clients import SchedulerClient
from .errors import SchedulerUnavailable
from .follow import DEFAULT_WALLTIME_WARNING_SECONDS, from_job, unreachable, vanished
from .hosts import refused_hosts
from .job_log import job_output_path, needs_log_tail, with_log_tail
from .metrics import observe_status_change
from .model import JobStatus
from .queue import queue_place, queue_wait_exceeded
from .registry import registry
from .transition import Transition, withdrawn_route

log = logging.getLogger(__name__)
BEFORE_READY = frozenset(phase.value for phase in Phase if phase.before_ready)
PARALLEL_PATCHES = 16


def _ref(notebook: dict) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": NOTEBOOK_KIND,
        "metadata": {
            "name": notebook["name"],
            "namespace": notebook["namespace"],
            "uid": notebook["uid"],
        },
    }


def _seconds_since(moment: dt.datetime, *stamps: str | None) -> float:
    """Seconds since the first of `stamps` that is set."""
    return seconds_between(next((stamp for stamp in stamps if stamp), None), moment)


async def apply_transition(
    notebook: dict, transition: Transition, limit: asyncio.Semaphore
) -> None:
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


async def carry_out(
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
            await apply_transition(
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
    await apply_transition(notebook, transition, limit)


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
                apply_transition(
                    n, unreachable(n["status"], str(error), moment, n["generation"]), limit
                )
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
    in_accounting: dict[str, JobStatus] | None = {}
    if forgotten:
        try:
            owners = {n["status"]["jobId"]: n["unixUser"] for n in forgotten}
            in_accounting = {
                j.job_id: j
                for j in await client.accounting(job_ids=list(owners))
                if j.owned_by(owners.get(j.job_id, ""))
            }
        except SchedulerUnavailable as error:
            log.warning("cluster %s: accounting did not answer: %s", client.name, error)
            in_accounting = None  # unknown, not gone

    found = {**(in_accounting or {}), **jobs}  # the queue's word first, then accounting's
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
        elif in_accounting is not None:
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
            changes.append(carry_out(client, spec, notebook, transition, overdue, limit))
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
        *(apply_transition(n, queue_place(n["status"], taken.places), limit) for n in notebooks)
    )
    return {
        "availabilityTime": timestamp(taken.taken_at),
        "partitions": [partition.as_status() for partition in taken.partitions],
    }
