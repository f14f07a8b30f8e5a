"""The status both resources share with their readers: phases, typed conditions and their reasons,
and the status shapes. crds/ describes the same (tests/unit/test_api_contract.py checks that they
agree).

Conditions follow the Kubernetes API conventions: one entry per type, with status True, False or
Unknown, a one-word reason, a message, lastTransitionTime and observedGeneration.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import TypedDict

from .times import timestamp


class Phase(enum.StrEnum):
    """A BatchNotebook's place in its life, in the order it passes them."""

    PENDING = "Pending"  # not submitted yet, or the scheduler has not said
    QUEUED = "Queued"  # waiting in the scheduler's queue
    STARTING = "Starting"  # the job runs; Jupyter has not reported yet
    READY = "Ready"  # Jupyter listens at status.url
    STOPPING = "Stopping"  # the job is being cancelled
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)

    @property
    def before_ready(self) -> bool:
        """Not Ready yet and not ended: waiting in a queue or starting, with no URL."""
        return self in (Phase.PENDING, Phase.QUEUED, Phase.STARTING)


class ConditionType(enum.StrEnum):
    """What each condition means when True; its reason says why it is what it is."""

    #: Submitted (BatchNotebook): the scheduler accepted the job and gave it an id. False with a
    #: refusal reason (REFUSALS) when the request itself was refused, nothing submitted.
    SUBMITTED = "Submitted"
    #: Running (BatchNotebook): the scheduler runs the job on an execution host.
    RUNNING = "Running"
    #: Ready (BatchNotebook): Jupyter reported from the host the scheduler runs the job on, and
    #: the hub may route to status.url. False once the job ended, with the way it ended.
    READY = "Ready"
    #: SchedulerReachable (BatchCluster and BatchNotebook): the scheduler answered the last query.
    #: False means only that it did not answer: nothing about the job is concluded from silence.
    SCHEDULER_REACHABLE = "SchedulerReachable"
    #: WalltimeEnding (BatchNotebook): a Ready notebook is within its cluster's
    #: walltimeWarningSeconds of the end of its walltime.
    WALLTIME_ENDING = "WalltimeEnding"


NOTEBOOK_CONDITIONS = tuple(ConditionType)
CLUSTER_CONDITIONS = (ConditionType.SCHEDULER_REACHABLE,)


class Reason(enum.StrEnum):
    """Why a condition is what it is; also the reason of the Event written with it."""

    # Submitted
    JOB_SUBMITTED = "JobSubmitted"
    SUBMISSION_REFUSED = "SubmissionRefused"  # the scheduler's own refusal, in its words
    INVALID_SPEC = "InvalidSpec"  # options beyond the profile's limits
    ACCOUNT_REFUSED = "AccountRefused"  # a Unix account the cluster does not allow
    SECRET_NOT_OWNED = "SecretNotOwned"  # the Secret named is not the notebook's own
    SECRET_MISSING = "SecretMissing"
    SECRET_INCOMPLETE = "SecretIncomplete"
    UNKNOWN_CLUSTER = "UnknownCluster"
    INSECURE_CALLBACK = "InsecureCallback"
    INVALID_TEMPLATE = "InvalidTemplate"
    # Running and Ready
    JOB_RUNNING = "JobRunning"
    JUPYTER_REPORTED = "JupyterReported"
    HOST_REFUSED = "HostRefused"  # the report came from another host than the job's
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    JOB_NOT_FOUND = "JobNotFound"  # neither the queue nor accounting knows the job
    JOB_REQUEUED = "JobRequeued"
    MAX_QUEUE_WAIT = "MaxQueueWait"
    # SchedulerReachable
    ANSWERED = "Answered"
    NO_ANSWER = "NoAnswer"
    # WalltimeEnding
    WALLTIME_ENDING = "WalltimeEnding"


#: Submitted=False reasons that refuse what was asked (the hub answers 400), not faults (500).
REFUSALS = frozenset(
    {
        Reason.SUBMISSION_REFUSED,
        Reason.INVALID_SPEC,
        Reason.ACCOUNT_REFUSED,
        Reason.SECRET_NOT_OWNED,
    }
)


class Condition(TypedDict, total=False):
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


def condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: bool | None,
    reason: Reason,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """Return conditions with one set, keeping lastTransitionTime when the status is unchanged."""
    value = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed_at = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == value and previous.get("lastTransitionTime")
        else timestamp(now)
    )
    new = Condition(
        type=type_.value,
        status=value,
        reason=reason.value,
        message=message,
        lastTransitionTime=changed_at,
    )
    if generation is not None:
        new["observedGeneration"] = generation
    if previous is None:
        return [*conditions, new]
    # In place: a list that only changes order would look changed and cost a write every poll.
    return [new if c is previous else c for c in conditions]


def is_true(conditions: list[Condition], type_: ConditionType) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


class NotebookStatus(TypedDict, total=False):
    """A BatchNotebook's status; crds/ describes each field."""

    phase: str
    jobId: str
    jobName: str
    schedulerState: str
    schedulerReason: str
    expectedStartTime: str
    queuePosition: int
    queueLength: int
    queuePartition: str
    execHost: str
    port: int
    url: str
    reportedHost: str
    reportedPort: int
    endReportedAt: str
    submitAttemptedAt: str
    submittedAt: str
    startedAt: str
    walltimeSeconds: int
    endsAt: str
    readyAt: str
    finishedAt: str
    lastSeenAt: str
    exitCode: int
    message: str
    observedGeneration: int
    conditions: list[Condition]


class ClusterStatus(TypedDict, total=False):
    """A BatchCluster's status; crds/ describes each field."""

    observedGeneration: int
    lastPollTime: str
    lastPollDurationSeconds: float
    schedulerVersion: str
    apiVersion: str
    activeJobs: int
    availabilityTime: str
    partitions: list[dict]
    pendingCancels: list[dict]  # the cancel backlog: only the operator's backlog.py writes it
    conditions: list[Condition]
