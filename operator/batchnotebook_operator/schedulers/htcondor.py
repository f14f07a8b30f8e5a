"""HTCondor: the job script submits itself (see templates/htcondor.sh.j2), one `condor_q -json`
for all of a cluster's notebooks, `condor_history -json` for jobs that have left the queue (a job
leaves condor_q as soon as it ends).

No availability snapshot: an HTCondor pool has no partitions or queues, and its matchmaker keeps
no queue order a position could be read from (each schedd negotiates by user priority); the
backend has no "partitions" command, so the snapshot reports no partitions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import ClassVar

from ..model import JobState, JobStatus
from .base import Commands, Scheduler, first_exec_host

STATES = {
    1: JobState.PENDING,  # Idle
    2: JobState.RUNNING,
    3: JobState.CANCELLED,  # Removed
    4: JobState.FINISHED,  # Completed (FAILED when its exit code says so)
    5: JobState.PENDING,  # Held: waits for someone to release it; HoldReason says why
    6: JobState.COMPLETING,  # Transferring Output
    7: JobState.PENDING,  # Suspended
}
STATE_NAMES = {
    1: "Idle",
    2: "Running",
    3: "Removed",
    4: "Completed",
    5: "Held",
    6: "TransferringOutput",
    7: "Suspended",
}
ATTRIBUTES = (
    "ClusterId,ProcId,JobStatus,JobBatchName,Owner,RemoteHost,LastRemoteHost,HoldReason,"
    "LastRejMatchReason,RemoveReason,ExitCode,ExitBySignal,ExitSignal"
)
BY_TAG = 'stringListMember(JobBatchName, "{{ tags|join(",") }}")'
# The notebook's tokens wait in their own private file (envfile.py), and a submit description
# could not carry them: every submit command becomes part of the job ClassAd, which other users of
# the schedd may read (batchspawner PR #227). The script goes, on stdin, into a private file in
# the user's home, and runs there once with "submit": it hands condor_submit a description naming
# that file as the executable. $1 is the cluster's binDirectory, if any (sudo resets PATH).
STAGE_AND_SUBMIT = (
    'set -e; umask 077; directory=${HOME:-$PWD}/.batchnotebook; mkdir -p "$directory"; '
    'script=$(mktemp "$directory/job-XXXXXXXX.sh"); cat > "$script"; chmod 700 "$script"; '
    'PATH=${1:+$1:}$PATH exec /bin/bash "$script" submit'
)


def _job_id(ad: dict) -> str:
    return f"{ad.get('ClusterId')}.{ad.get('ProcId', 0)}"


def _state(ad: dict) -> tuple[JobState, str, str, int | None]:
    """The common state, HTCondor's name for it, the reason in HTCondor's words, the exit code."""
    status = int(ad.get("JobStatus", 0))
    state, raw = STATES.get(status, JobState.UNKNOWN), STATE_NAMES.get(status, str(status))
    exit_code = None
    if ad.get("ExitBySignal"):
        exit_code = 128 + int(ad.get("ExitSignal") or 0)
    elif ad.get("ExitCode") is not None:
        exit_code = int(ad["ExitCode"])
    reason = ""
    if status == 5:
        reason = ad.get("HoldReason") or ""
    elif status == 1:
        reason = (ad.get("LastRejMatchReason") or "").strip()
    elif status == 3:
        reason = ad.get("RemoveReason") or ""
        if "PeriodicRemove" in reason:  # the walltime limit of our template: not a cancellation
            state = JobState.FAILED
    elif status == 4 and exit_code:
        state = JobState.FAILED
    return state, raw, reason, exit_code if state.ended else None


def _ads(stdout: str) -> list[dict]:
    """condor_q -json and condor_history -json print a JSON array, or nothing when no job
    matches."""
    return json.loads(stdout) if stdout.strip() else []


class HTCondor(Scheduler):
    name = "htcondor"
    suspended_states = frozenset({"Suspended"})
    commands: ClassVar[Commands] = {
        "submit": (
            "/bin/sh",
            "-c",
            STAGE_AND_SUBMIT,
            "batchnotebook-submit",
            "{{ bin_directory }}",
        ),
        "query": (
            "condor_q",
            "-allusers",
            "-json",
            "-attributes",
            ATTRIBUTES,
            "-constraint",
            BY_TAG,
        ),
        "accounting": (
            "condor_history",
            "-json",
            "-attributes",
            ATTRIBUTES,
            "{% if tags and not job_ids %}-constraint{% endif %}",
            "{% if tags and not job_ids %}" + BY_TAG + "{% endif %}",
            "{{ job_ids }}",
        ),
        "cancel": ("condor_rm", "{{ job_ids }}"),
        "version": ("condor_version",),
    }
    unavailable_patterns = (
        r"Failed to fetch ads",
        r"Failed to connect",
        r"CEDAR:\d+",
        r"Can't find address",
        r"Unable to locate local daemon",
        r"Timed out",
        r"Connection refused",
        r"SECMAN:\d+",
    )

    def parse_submit(self, stdout: str) -> str:
        # "Submitting job(s).\n1 job(s) submitted to cluster 12345."; we queue one job, proc 0.
        match = re.search(r"job\(s\) submitted to cluster (\d+)\.", stdout)
        if not match:
            raise ValueError(f"no cluster id in condor_submit output: {stdout!r}")
        return f"{match[1]}.0"

    def parse_query(self, stdout: str) -> Iterator[JobStatus]:
        for ad in _ads(stdout):
            state, raw, reason, exit_code = _state(ad)
            host = ad.get("RemoteHost") or ad.get("LastRemoteHost") or ""
            yield JobStatus(
                job_id=_job_id(ad),
                name=ad.get("JobBatchName") or "",
                user=ad.get("Owner") or "",
                state=state,
                raw_state=raw,
                exec_host=first_exec_host(host) if state is not JobState.PENDING else "",
                reason=reason,
                exit_code=exit_code,
            )

    def parse_version(self, stdout: str) -> str:
        # "$CondorVersion: 23.4.0 2024-02-08 BuildID: 712251 PackageID: 23.4.0-1 $"
        match = re.search(r"\$CondorVersion: (\S+)", stdout)
        return match[1] if match else super().parse_version(stdout)
