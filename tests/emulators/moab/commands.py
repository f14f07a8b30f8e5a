"""Moab (9.1, over a Torque resource manager) dialect: msub, showq --xml and mjobctl -c print what
the real ones print.

Sources of the texts: `showq --xml` and `showq -c --xml` captured at a Moab site (TARDIS's test
data: element and attribute names, the queue sections, CompletionCode "CNCLD"), msub's output
(a blank line, then the id) and mjobctl's ("job 'N' cancelled", "ERROR:  invalid job specified
(N)") from the same data, the client's connection errors from cBio/cbio-cluster issues #69/#35,
and Moab's own formats ("ERROR:    cannot submit job - ...", "cannot locate requested class").
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any
from xml.sax.saxutils import quoteattr

from core import (
    COMPLETED,
    QUEUED,
    AlreadyFinished,
    Config,
    Emulator,
    Job,
    NotOwner,
    UnknownJob,
    current_user,
    fail,
)
from pbs_family import UsageError, origin_variables, parse

MOAB_VERSION = "9.1.3"
MOAB_PORT = 42559
#: msub takes qsub's options (and `#MSUB` as well as `#PBS` directives)
MSUB_OPTIONS = "a:A:c:C:d:e:E:hIj:k:K:l:m:M:N:o:p:P:q:r:S:t:u:v:VW:xz"
WALLTIME_EXCEEDED = -11  # reported by the Torque resource manager underneath
CLIENT_TIMEOUT_SECONDS = 30


def environment(job: Job, config: Config) -> dict[str, str]:
    """What Moab and the Torque resource manager under it set for a job."""
    cpus = str(job.resources.get("ncpus", 1))
    return {
        **job.extra.get("variables", {}),
        "MOAB_JOBID": job.job_id,
        "MOAB_JOBNAME": job.name,
        "MOAB_USER": job.owner,
        "MOAB_GROUP": job.owner,
        "MOAB_CLASS": job.queue,
        "MOAB_ACCOUNT": job.extra.get("account", ""),
        "MOAB_NODELIST": config.node,
        "MOAB_NODECOUNT": str(job.resources.get("nodes", 1)),
        "MOAB_PROCCOUNT": cpus,
        "PBS_JOBID": drm_job_id(job, config),
        "PBS_JOBNAME": job.name,
        "PBS_QUEUE": job.queue,
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_NODEFILE": job.node_file,
        "PBS_NUM_PPN": cpus,
        "PBS_NP": cpus,
    }


emulator = Emulator(
    "moab",
    environment=environment,
    job_id_format="{sequence}",
    defaults={"queues": ["batch", "debug"], "default_queue": "batch"},
)


def drm_job_id(job: Job, config: Config) -> str:
    return f"{job.job_id}.{config.server}"


def unreachable(config: Config) -> None:
    """The client's answer when the server is down, or silent past the client's timeout."""
    if emulator.server_down:
        fail(
            f"ERROR:    connection refused - no service listening at {config.server}:{MOAB_PORT}",
            1,
        )
    if not emulator.wait_while_stalled(CLIENT_TIMEOUT_SECONDS):
        fail(
            f"ERROR:    communication error {config.server}:{MOAB_PORT} (client timed out after "
            f"{CLIENT_TIMEOUT_SECONDS} seconds)",
            1,
        )


def moab_state(job: Job) -> str:
    if job.state == QUEUED:
        return "Idle"
    if job.state != COMPLETED:
        return "Running"
    return "Removed" if job.cancelled_by else "Completed"


def completion_code(job: Job) -> str:
    if job.cancelled_by:
        return "CNCLD"
    if job.walltime_exceeded:
        return str(WALLTIME_EXCEEDED)
    if job.signal is not None:
        return str(256 + job.signal)
    return str(job.exit_code if job.exit_code is not None else 0)


def job_attributes(job: Job, config: Config) -> dict[str, Any]:
    now = time.time()
    cpus = int(job.resources.get("ncpus", 1))
    values: dict[str, Any] = {
        "Account": job.extra.get("account") or None,
        "Class": job.queue,
        "DRMJID": drm_job_id(job, config),
        "EEDuration": int((job.start_time or now) - job.submit_time),
        "GJID": job.job_id,
        "Group": job.owner,
        "JobID": job.job_id,
        "JobName": job.name,
        "PAL": "torque",
        "ReqAWDuration": job.walltime_seconds or None,
        "ReqProcs": cpus,
        "StartPriority": 1,
        "StartTime": int(job.start_time or job.estimated_start or 0),
        "State": moab_state(job),
        "SubmissionTime": int(job.submit_time),
        "SuspendDuration": 0,
        "User": job.owner,
    }
    if job.start_time is not None:
        values |= {
            "AWDuration": int((job.end_time or now) - job.start_time),
            "MasterHost": config.node,
            "RsvStartTime": int(job.start_time),
            "StatPSDed": f"{float(cpus * ((job.end_time or now) - job.start_time)):.6f}",
            "StatPSUtl": "0.000000",
        }
    if job.state == COMPLETED:
        values |= {"CompletionCode": completion_code(job), "CompletionTime": int(job.end_time or 0)}
    return {key: value for key, value in values.items() if value is not None}


def xml_element(name: str, attributes: dict[str, Any], children: str = "") -> str:
    """Moab's XML: attributes in ASCII order, no whitespace, `<x></x>` for empty elements."""
    text = "".join(f" {key}={quoteattr(str(attributes[key]))}" for key in sorted(attributes))
    return f"<{name}{text}>{children}</{name}>"


def cluster_element(config: Config, jobs: list[Job]) -> str:
    busy = sum(int(j.resources.get("ncpus", 1)) for j in jobs if j.state not in (QUEUED, COMPLETED))
    counts = {
        f"{where}{what}": 0
        for where in ("Local", "Remote")
        for what in (
            "ActiveNodes",
            "AllocProcs",
            "ConfigNodes",
            "IdleNodes",
            "IdleProcs",
            "UpNodes",
            "UpProcs",
        )
    }
    counts |= {
        "LocalActiveNodes": 1 if busy else 0,
        "LocalAllocProcs": busy,
        "LocalConfigNodes": 1,
        "LocalIdleNodes": 0 if busy else 1,
        "LocalUpNodes": 1,
        "LocalUpProcs": os.cpu_count() or 1,
        "LocalIdleProcs": max((os.cpu_count() or 1) - busy, 0),
    }
    return xml_element("cluster", {**counts, "time": int(time.time())})


def queue_element(option: str, jobs: list[Job], config: Config, **extra: Any) -> str:
    inner = "".join(xml_element("job", job_attributes(job, config)) for job in jobs)
    return xml_element("queue", {"count": len(jobs), "option": option, **extra}, inner)


# -- msub ---------------------------------------------------------------------------------------


def msub(argv: list[str]) -> int:
    try:
        submission = parse(argv, options=MSUB_OPTIONS, directive_prefixes=("#MSUB", "#PBS"))
    except UsageError as error:
        fail(f"ERROR:    {error}", 1)
    config = emulator.config
    unreachable(config)
    if submission.hold or "-I" in argv or "-t" in argv:
        fail("ERROR:    holds, interactive and array jobs are not emulated", 1)
    queue = submission.queue or config.default_queue
    if queue not in config.queues:
        fail(f"ERROR:    cannot submit job - cannot locate requested class '{queue}'", 1)
    spec = submission.nodes_spec()
    cpus = int(spec.get("ppn") or submission.resources.get("procs") or 1)
    workdir = os.getcwd()
    job = emulator.submit(
        submission.script,
        current_user(),
        submission.name,
        {
            "ncpus": cpus,
            "mem": submission.resources.get("mem", ""),
            "gpus": spec.get("gpus", ""),
            "walltime_seconds": submission.walltime_seconds,
            "nodes": int(spec.get("count") or 1),
            "node_file_lines": int(spec.get("count") or 1) * cpus,  # each node once per ppn
        },
        queue,
        submission.output_path or f"{submission.name}.o{{sequence}}",
        {
            "account": submission.account,
            "qos": submission.resources.get("qos", ""),
            "variables": {
                **origin_variables(queue, config.server, workdir),
                **submission.variables,
            },
        },
        error_path=None
        if submission.join == "oe"
        else (submission.error_path or f"{submission.name}.e{{sequence}}"),
    )
    if not submission.quiet:
        print(f"\n\n{job.job_id}")
    return 0


# -- showq --------------------------------------------------------------------------------------


def showq(argv: list[str]) -> int:
    if argv == ["--version"]:
        print(f"Version: moab client {MOAB_VERSION}")
        return 0
    if "--xml" not in argv:
        fail("showq: only the --xml output is emulated", 2)
    config = emulator.config
    unreachable(config)
    jobs = emulator.jobs()
    cluster = cluster_element(config, jobs)
    if "-c" in argv:
        completed = sorted((j for j in jobs if j.state == COMPLETED), key=lambda j: j.end_time or 0)
        queues = queue_element(
            "completed", completed, config, purgetime=config.keep_finished_seconds
        )
    else:
        active = [j for j in jobs if j.state not in (QUEUED, COMPLETED)]
        eligible = [j for j in jobs if j.state == QUEUED]
        queues = (
            queue_element("active", active, config)
            + queue_element("eligible", eligible, config)
            + queue_element("blocked", [], config)
        )
    print(f"<Data><Object>queue</Object>{cluster}{queues}</Data>")
    return 0


# -- mjobctl ------------------------------------------------------------------------------------


def mjobctl(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "-c":
        fail("ERROR:    only 'mjobctl -c <JOBID>...' is emulated", 2)
    config = emulator.config
    unreachable(config)
    status = 0
    for operand in argv[1:]:
        try:
            job = emulator.cancel(operand, current_user())
            print(f"\n\njob '{job.job_id}' cancelled\n")
        except (UnknownJob, AlreadyFinished):
            sys.stderr.write(f"\nERROR:  invalid job specified ({operand})\n\n")
            status = 1
        except NotOwner:
            sys.stderr.write(
                f"\nERROR:    user '{current_user()}' is not authorized to cancel job "
                f"'{operand}'\n\n"
            )
            status = 1
    return status
