"""BatchNotebook: submit on create (exactly once), cancel on delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import GROUP, NOTEBOOKS, REPORT_TOKEN_KEY, VERSION, accounts
from batchnotebook_api.accounts import AccountRefused
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources, notebook_resources
from batchnotebook_api.status import ConditionType, Phase, Reason, condition
from batchnotebook_api.times import now, parse_timestamp, timestamp

from .. import backlog
from ..backlog import pending_cancel
from ..clients import SchedulerClient
from ..errors import SchedulerUnavailable, SubmissionRefused
from ..model import JobState, JobStatus
from ..notebook_secret import SecretNotOwned, own_secret_data
from ..registry import registry
from ..render import callback_problem, job_script
from .report_auth import report_tokens

# Deleting waits this many attempts (one per poll interval) for a scheduler that answers to
# confirm that the job ended, then hands the job to the cluster's cancel backlog (backlog.py).
CANCEL_ATTEMPTS = 30


# Async, like the other index: kopf runs a sync handler in a thread for every event.
@kopf.index(GROUP, VERSION, NOTEBOOKS)
async def notebooks_by_cluster(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict:
    return {
        spec.get("clusterName"): {
            "name": name,
            "namespace": namespace,
            "cluster": spec.get("clusterName"),
            "uid": uid,
            "generation": meta.get("generation"),
            "createdAt": meta.get("creationTimestamp"),
            "unixUser": spec.get("unixUser"),
            "profile": spec.get("profile"),
            "status": dict(status),
        }
    }


def cluster_spec(clusters_by_name: Mapping[str, Iterable[dict]], name: str) -> dict | None:
    found = list(clusters_by_name.get(name, []))
    return found[0] if found else None


async def fail(body: kopf.Body, reason: Reason, message: str) -> NoReturn:
    """The notebook fails for good (nothing was submitted): status, Event, and kopf stops."""
    moment = now()
    conditions = condition(
        body.status.get("conditions", []),
        ConditionType.SUBMITTED,
        False,
        reason,
        message,
        body.meta.get("generation"),
        moment,
    )
    await registry.kube.patch_notebook_status(
        body.meta["namespace"],
        body.meta["name"],
        {
            "phase": Phase.FAILED.value,
            "message": message,
            "finishedAt": timestamp(moment),
            "conditions": conditions,
            "observedGeneration": body.meta.get("generation"),
        },
    )
    await registry.kube.event(body, "Warning", reason, message)
    raise kopf.PermanentError(message)


async def check_account(
    body: kopf.Body, client: SchedulerClient, unix_user: str, interval: float
) -> None:
    """Fail the notebook if its Unix account does not exist on the cluster or is a system
    account (uid below minUid); wait if the cluster does not answer. Before anything is read
    or submitted for it."""
    try:
        async with client.turns:
            await client.check_account(unix_user)
    except AccountRefused as error:
        await fail(body, Reason.ACCOUNT_REFUSED, str(error))
    except SchedulerUnavailable as error:
        await wait_for_the_scheduler(body, f"to look up the account {unix_user}", error, interval)


async def wait_for_the_scheduler(
    body: kopf.Body, purpose: str, error: SchedulerUnavailable, interval: float
) -> NoReturn:
    """The cluster did not answer: the notebook says so (Pending, SchedulerReachable False) and
    kopf tries again after a poll interval."""
    await registry.kube.patch_notebook_status(
        body.meta["namespace"],
        body.meta["name"],
        {
            "phase": Phase.PENDING.value,
            "message": f"waiting for the scheduler {purpose}: {error}",
            "conditions": condition(
                body.status.get("conditions", []),
                ConditionType.SCHEDULER_REACHABLE,
                False,
                Reason.NO_ANSWER,
                str(error)[:500],
                body.meta.get("generation"),
                now(),
            ),
        },
    )
    raise kopf.TemporaryError(f"scheduler unavailable: {error}", delay=interval) from error


# The type: ignore[arg-type] on kopf decorators here: kopf's handler protocols cannot express
# a handler taking a kopf index by name.
@kopf.on.resume(GROUP, VERSION, NOTEBOOKS)
@kopf.on.create(GROUP, VERSION, NOTEBOOKS)  # type: ignore[arg-type]  # clusters_by_name
async def submit(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    name: str,
    namespace: str,
    uid: str,
    retry: int,
    reason: kopf.Reason,
    clusters_by_name: kopf.Index,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Check the request, read the notebook's own Secret, submit (or adopt) the job, record it.
    Each step that fails for good fails the notebook (fail); one that may pass later retries."""
    if status.get("jobId") or Phase(status.get("phase", "Pending")).terminal:
        return
    cluster_name = spec["clusterName"]
    cluster, resources = await checked_request(body, spec, clusters_by_name)
    client = registry.client(cluster_name, cluster)
    interval = cluster.get("pollIntervalSeconds", 10)
    await check_account(body, client, spec["unixUser"], interval)
    notebook = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": spec}
    environment = await secret_environment(body, notebook, retry)
    report_tokens.remember(uid, environment[REPORT_TOKEN_KEY])  # the report endpoint's cache

    # A job may exist already only if a submission was attempted: the scheduler is asked then
    # (an operator killed between the submit and the status write adopts the job it finds, never
    # submits a second), not for each new notebook, which would triple a start burst's commands.
    attempted = bool(status.get("submitAttemptedAt")) or retry > 0 or reason != kopf.Reason.CREATE
    if not status.get("submitAttemptedAt"):
        # Written before the submit, never after; and before taking a turn, which it would
        # otherwise hold for an API round trip while the burst waits.
        await registry.kube.patch_notebook_status(
            namespace, name, {"submitAttemptedAt": timestamp(now())}
        )
    tag = client.scheduler.job_name(uid)
    job_id, how = await submitted_job(
        body, notebook, client, cluster, resources, environment, attempted
    )
    logger.info("job %s %s as %s", job_id, how, spec["unixUser"])
    await record_submission(body, status, job_id, how, tag, resources)


async def checked_request(
    body: kopf.Body, spec: kopf.Spec, clusters_by_name: kopf.Index
) -> tuple[dict, Resources]:
    """The notebook's cluster and resources, checked against the profile's limits and the
    cluster's account policy before anything reaches the scheduler."""
    cluster_name = spec["clusterName"]
    cluster = cluster_spec(clusters_by_name, cluster_name)
    if cluster is None:
        await fail(body, Reason.UNKNOWN_CLUSTER, f"there is no BatchCluster named {cluster_name!r}")
    try:
        resources = notebook_resources(cluster_name, cluster, dict(spec))
    except AccountRefused as error:
        await fail(body, Reason.ACCOUNT_REFUSED, str(error))
    except InvalidOptions as error:
        await fail(body, Reason.INVALID_SPEC, str(error))
    if problem := callback_problem(cluster):  # the job's report would carry its token
        await fail(body, Reason.INSECURE_CALLBACK, problem)
    return cluster, resources


async def secret_environment(body: kopf.Body, notebook: dict, retry: int) -> dict[str, str]:
    """The job's environment from the notebook's own Secret (own_secret_data says which that is);
    a Secret the spawner has not finished making is waited for, a little."""
    secret_name = notebook["spec"]["envSecretName"]
    try:
        environment = await own_secret_data(registry.kube, notebook)
    except SecretNotOwned as error:
        if not error.final and retry < 10:  # the spawner gives it an owner right after creating
            raise kopf.TemporaryError(str(error), delay=2) from error
        await fail(body, Reason.SECRET_NOT_OWNED, f"refused to use the Secret: {error}")
    except ApiException as error:
        if error.status == 404 and retry < 10:
            meta = notebook["metadata"]
            await registry.kube.patch_notebook_status(
                meta["namespace"],
                meta["name"],
                {"phase": Phase.PENDING.value, "message": f"waiting for Secret {secret_name}"},
            )
            raise kopf.TemporaryError(f"Secret {secret_name} not found yet", delay=2) from error
        await fail(body, Reason.SECRET_MISSING, f"cannot read Secret {secret_name}: {error.reason}")
    if not environment.get(REPORT_TOKEN_KEY):
        await fail(
            body, Reason.SECRET_INCOMPLETE, f"Secret {secret_name} has no {REPORT_TOKEN_KEY}"
        )
    return environment


async def submitted_job(
    body: kopf.Body,
    notebook: dict,
    client: SchedulerClient,
    cluster: dict,
    resources: Resources,
    environment: dict[str, str],
    attempted: bool,
) -> tuple[str, str]:
    """(job id, how): the job an earlier attempt submitted, found by its tag and owner, or a new
    one. Within one of the cluster's turns, so that a burst of starts queues here, not at the
    scheduler."""
    meta, spec = notebook["metadata"], notebook["spec"]
    unix_user = spec["unixUser"]
    try:
        async with client.turns:
            tag = client.scheduler.job_name(meta["uid"])
            existing = await client.find(tag, unix_user, created(body)) if attempted else None
            if existing is not None:
                return existing.job_id, "found after a restart"
            script = job_script(
                cluster,
                client.scheduler,
                namespace=meta["namespace"],
                name=meta["name"],
                uid=meta["uid"],
                unix_user=unix_user,
                resources=resources,
                environment_file=client.environment_in_file,
            )
            job_id = await client.submit(
                script, unix_user, environment=environment, uid=meta["uid"]
            )
            return job_id, "submitted"
    except SubmissionRefused as error:
        await fail(body, Reason.SUBMISSION_REFUSED, f"the scheduler refused the job: {error}")
    except InvalidOptions as error:
        await fail(body, Reason.INVALID_TEMPLATE, str(error))
    except SchedulerUnavailable as error:
        interval = cluster.get("pollIntervalSeconds", 10)
        await wait_for_the_scheduler(body, "to take the job", error, interval)


async def record_submission(
    body: kopf.Body, status: kopf.Status, job_id: str, how: str, tag: str, resources: Resources
) -> None:
    """The job's id in the status (from then on the job is known by it), and an Event."""
    spec, moment = body.spec, now()
    conditions = condition(
        status.get("conditions", []),
        ConditionType.SUBMITTED,
        True,
        Reason.JOB_SUBMITTED,
        f"job {job_id}",
        body.meta.get("generation"),
        moment,
    )
    await registry.kube.patch_notebook_status(
        body.meta["namespace"],
        body.meta["name"],
        {
            "phase": Phase.QUEUED.value,
            "jobId": job_id,
            "jobName": tag,
            "submittedAt": status.get("submittedAt") or timestamp(moment),
            "walltimeSeconds": resources.walltime_seconds,
            "message": f"job {job_id} {how} to {spec['clusterName']}, waiting for the scheduler",
            "conditions": conditions,
            "observedGeneration": body.meta.get("generation"),
        },
    )
    await registry.kube.event(
        body,
        "Normal",
        "Submitted",
        f"job {job_id} {how} to {spec['clusterName']} as {spec['unixUser']}",
    )


def created(body: kopf.Body) -> dt.datetime | None:
    stamp = body.meta.get("creationTimestamp")
    return parse_timestamp(stamp) if stamp else None


async def recorded_job(
    client: SchedulerClient, status: kopf.Status, tag: str, owner: str, since: dt.datetime | None
) -> JobStatus | None:
    """The notebook's job: the one whose id it recorded; without one (deleted before the status
    write, or while the submission was under way), a job of its tag that its owner submitted."""
    if status.get("jobId"):
        return await client.job(status["jobId"], tag, owner)
    return await client.find(tag, owner, since)


@kopf.on.delete(GROUP, VERSION, NOTEBOOKS)  # type: ignore[arg-type]  # clusters_by_name
async def cancel(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    uid: str,
    retry: int,
    clusters_by_name: kopf.Index,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Cancel the notebook's job and wait, a little, for the scheduler to confirm that it ended;
    a job it does not confirm goes to the cluster's cancel backlog (backlog.py) and the notebook
    goes: nothing stays Terminating, and no job is left behind."""
    cluster_name = spec["clusterName"]
    cluster = cluster_spec(clusters_by_name, cluster_name)
    if cluster is None:
        await registry.kube.event(
            body,
            "Warning",
            "UnknownCluster",
            f"BatchCluster {cluster_name} is gone; cannot cancel the job",
        )
        return
    refused = accounts.refusal(cluster, spec["unixUser"])
    if refused and not (status.get("submitAttemptedAt") or status.get("jobId")):
        # Refused before any submission: nothing to cancel, and nothing may run as that account.
        logger.info("no job to cancel: the account %s is refused (%s)", spec["unixUser"], refused)
        return
    client = registry.client(cluster_name, cluster)
    interval = cluster.get("pollIntervalSeconds", 10)
    tag = client.scheduler.job_name(uid)
    job_id = status.get("jobId", "")
    try:
        async with client.turns:
            if retry == 0 and not status.get("startedAt"):  # no job read what submit() staged
                await client.discard_environment(uid, spec["unixUser"])
            job = await recorded_job(client, status, tag, spec["unixUser"], created(body))
            if job is None or job.state.ended:
                logger.info("no job to cancel" if job is None else f"job {job.job_id} has ended")
                return
            job_id = job.job_id
            await client.cancel([job_id], spec["unixUser"])
            after = await client.job(job_id, tag, spec["unixUser"])
        # COMPLETING: the scheduler has ended the job and is cleaning up after it.
        if after is None or after.state.ended or after.state is JobState.COMPLETING:
            await registry.kube.event(body, "Normal", "Cancelled", f"job {job_id} cancelled")
            return
        if retry + 1 < CANCEL_ATTEMPTS:  # the scheduler answers: the job is ending, or soon is
            raise kopf.TemporaryError(f"job {job_id} is still {after.raw_state}", delay=interval)
        problem = f"job {job_id} is still {after.raw_state} after {CANCEL_ATTEMPTS} attempts"
    except SchedulerUnavailable as error:
        # Handed over at once: the cluster's rounds ask for the whole backlog in one query, where
        # each deletion's retries would hold a turn and wait out a timeout of their own.
        problem = f"the scheduler did not answer: {error}"
    if not job_id and not status.get("submitAttemptedAt"):
        logger.info("no job to cancel: none was submitted")  # it is written before the submit
        return
    await hand_over(body, cluster_name, tag, job_id, problem, interval)


async def hand_over(
    body: kopf.Body, cluster_name: str, tag: str, job_id: str, problem: str, interval: float
) -> None:
    """Record the job in the cluster's cancel backlog, before kopf lets the notebook go."""
    entry = pending_cancel(body.meta, body.spec["unixUser"], tag, job_id, now())
    try:
        await backlog.record(registry.kube, cluster_name, entry, problem)
    except LookupError as error:  # the index still had it: look again
        raise kopf.TemporaryError(str(error), delay=interval) from error
    await registry.kube.event(
        body,
        "Warning",
        "CancelPending",
        f"{problem}; {entry.describe()} waits in BatchCluster {cluster_name}'s "
        "status.pendingCancels and is cancelled as soon as the scheduler answers",
    )
