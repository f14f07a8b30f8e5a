"""PBS Pro / OpenPBS (22.05) dialect: qsub, qstat and qdel print what the real ones print.

Sources of the texts: OpenPBS src/cmds/qstat.c (connection, unknown-job and history messages and
their exit statuses), `qstat -f -F json` captured from PBS 22.05/23.06 (baw-server's and
FirecREST's test data), the scheduler's comment texts in OpenPBS src/scheduler/constant.h;
`qstat -Q -f -F json` as buildtest's documentation shows it (PBS 19.0.0: queue_type, total_jobs,
state_count, resources_assigned, hasnodes, enabled, started), `pbsnodes -a -F json` as ALCF
Polaris prints it (PBS 2022.1: Mom, ntype, state, pcpus, jobs, resources_available,
resources_assigned, resv_enable, sharing, last_state_change_time).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from core import (
    COMPLETED,
    EXITING,
    QUEUED,
    RUNNING,
    AlreadyFinished,
    Config,
    Emulator,
    Job,
    NotOwner,
    UnknownJob,
    current_user,
    fail,
)
from pbs_family import Submission, UsageError, duration, origin_variables, parse, wrapped

PBS_VERSION = "22.05.11"
#: qsub's getopt string (OpenPBS src/cmds/qsub.c)
QSUB_OPTIONS = "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:P:q:r:R:S:u:v:VW:Xz"
# Exit statuses are pbs_errno truncated to a byte, as qstat's exit(any_failed) gives them.
EXIT_UNKNOWN_JOB = 15001 % 256
EXIT_HISTORY_JOB = 15139 % 256
EXIT_UNAUTHORIZED = 15007 % 256
EXIT_NO_CONNECTION = 255  # exit(connect) with connect == -1
WALLTIME_EXCEEDED = -29  # JOB_EXEC_KILL_WALLTIME
SUBSTATE = {"Q": 10, "R": 42, "E": 51, "F": 92}
SUBSTATE_TERMINATED = 91


def environment(job: Job, config: Config) -> dict[str, str]:
    """What pbs_mom sets for a job, on top of its Variable_List."""
    cpus = str(job.resources.get("ncpus", 1))
    return {
        **job.extra.get("variables", {}),
        "PBS_JOBID": job.job_id,
        "PBS_JOBNAME": job.name,
        "PBS_QUEUE": job.queue,
        "PBS_JOBDIR": os.path.expanduser(f"~{job.owner}"),
        "PBS_NODEFILE": job.node_file,
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_TASKNUM": "1",
        "PBS_NODENUM": "0",
        "PBS_MOMPORT": "15003",
        "NCPUS": cpus,
        "OMP_NUM_THREADS": cpus,
        "TMPDIR": f"/var/tmp/pbs.{job.job_id}",
    }


emulator = Emulator(
    "pbspro",
    environment=environment,
    wait_reason="Not Running: Server job limit has been reached.",
    defaults={"queues": ["workq", "debug", "batch"], "default_queue": "workq"},
)


def connection_refused(command: str, config: Config) -> None:
    fail(
        f"Connection refused\n{command}: cannot connect to server {config.server} (errno=15010)",
        EXIT_NO_CONNECTION,
    )


def state_letter(job: Job) -> str:
    return {QUEUED: "Q", RUNNING: "R", EXITING: "E", COMPLETED: "F"}[job.state]


def exit_status(job: Job) -> int | None:
    if job.walltime_exceeded:
        return WALLTIME_EXCEEDED
    if job.signal is not None:
        return 256 + job.signal
    return job.exit_code


def vnode(job: Job, config: Config) -> str:
    chunk = f"{config.node}:ncpus={job.resources.get('ncpus', 1)}"
    if job.resources.get("mem"):
        chunk += f":mem={job.resources['mem']}"
    if job.resources.get("ngpus"):
        chunk += f":ngpus={job.resources['ngpus']}"
    return f"({chunk})"


def attributes(job: Job, config: Config) -> dict[str, Any]:
    """A job's attributes in the order and types PBS 22.05's JSON output has them."""
    state = state_letter(job)
    cpus = int(job.resources.get("ncpus", 1))
    now = time.time()
    started = job.start_time is not None
    host = f"{config.node}/0" if cpus == 1 else f"{config.node}/0*{cpus}"
    values: dict[str, Any] = {"Job_Name": job.name, "Job_Owner": f"{job.owner}@{job.submit_host}"}
    if started:
        ran = (job.end_time or now) - (job.start_time or now)
        values["resources_used"] = {
            "cpupercent": 0,
            "cput": "00:00:00",
            "mem": "0kb",
            "ncpus": cpus,
            "vmem": "0kb",
            "walltime": duration(ran),
        }
    values |= {"job_state": state, "queue": job.queue, "server": config.server}
    if job.extra.get("account"):
        values["Account_Name"] = job.extra["account"]
    values |= {
        "Checkpoint": "u",
        "ctime": time.ctime(job.submit_time),
        "Error_Path": f"{job.submit_host}:{job.extra['error_path'].format(sequence=job.sequence)}",
    }
    if started:
        values |= {"exec_host": host, "exec_vnode": vnode(job, config)}
    values |= {
        "Hold_Types": "n",
        "Join_Path": job.extra.get("join", "n"),
        "Keep_Files": "n",
        "Mail_Points": "a",
        "mtime": time.ctime(job.end_time or job.start_time or job.submit_time),
        "Output_Path": f"{job.submit_host}:{job.output_path}",
        "Priority": 0,
        "qtime": time.ctime(job.submit_time),
        "Rerunable": "True",
        "Resource_List": resource_list(job),
    }
    if started:
        values["stime"] = time.ctime(job.start_time)
    if state == "F" and started:
        values["obittime"] = time.ctime(job.end_time)
    if started:
        values |= {"session_id": job.job_pgid or 0, "jobdir": f"/home/{job.owner}"}
    values["substate"] = (
        SUBSTATE_TERMINATED if job.cancelled_by and state == "F" else SUBSTATE[state]
    )
    values["Variable_List"] = job.extra.get("variables", {})
    values["comment"] = comment(job, config)
    values["etime"] = time.ctime(job.submit_time)
    if started:
        values["run_count"] = 1
    if state == "F" and started:
        values["Stageout_status"] = 1
        values["Exit_status"] = exit_status(job)
    if job.extra.get("arguments"):
        values["Submit_arguments"] = " ".join(job.extra["arguments"])
    if state == "Q" and job.estimated_start:
        values["estimated"] = {
            "exec_vnode": vnode(job, config),
            "start_time": time.ctime(job.estimated_start),
        }
    if state == "F":
        values["history_timestamp"] = int(job.end_time or now)
    values["project"] = job.extra.get("project") or "_pbs_project_default"
    values["Submit_Host"] = job.submit_host
    return values


def resource_list(job: Job) -> dict[str, Any]:
    cpus = int(job.resources.get("ncpus", 1))
    listed: dict[str, Any] = {}
    if job.resources.get("mem"):
        listed["mem"] = job.resources["mem"]
    listed["ncpus"] = cpus
    if job.resources.get("ngpus"):
        listed["ngpus"] = int(job.resources["ngpus"])
    listed |= {"nodect": 1, "place": "pack", "select": job.resources.get("select")}
    if job.walltime_seconds:
        listed["walltime"] = duration(job.walltime_seconds)
    return listed


def comment(job: Job, config: Config) -> str:
    if job.state == QUEUED:
        return job.reason
    if job.start_time is None:  # deleted while it waited
        return job.reason or "Job deleted"
    ran = time.strftime("%a %b %d at %H:%M", time.localtime(job.start_time))
    text = f"Job run at {ran} on {vnode(job, config)}"
    if job.state != COMPLETED:
        return text
    return text + (" and terminated" if job.cancelled_by else " and finished")


# -- qsub ---------------------------------------------------------------------------------------


def qsub(argv: list[str]) -> int:
    try:
        submission = parse(argv, options=QSUB_OPTIONS, directive_prefixes=("#PBS",))
    except UsageError as error:
        fail(f"qsub: {error}\nusage: qsub [-a date_time] [-A account_string] ... [script]", 2)
    emulator.wait_while_stalled()
    config = emulator.config
    if emulator.server_down:
        connection_refused("qsub", config)
    if submission.hold or "-I" in argv or "-J" in " ".join(argv):
        fail("qsub: holds, interactive and array jobs are not emulated", 2)
    queue = submission.queue or config.default_queue
    if queue not in config.queues:
        fail("qsub: Unknown queue", 1)
    if submission.walltime_seconds is None and "walltime" in submission.resources:
        fail("qsub: Illegal attribute or resource value Resource_List.walltime", 1)
    job = emulator.submit(
        submission.script,
        current_user(),
        submission.name,
        resources(submission),
        queue,
        submission.output_path or f"{submission.name}.o{{sequence}}",
        extra(submission, queue, config),
        error_path=None if submission.join == "oe" else error_path(submission),
    )
    if not submission.quiet:
        print(job.job_id)
    return 0


def resources(submission: Submission) -> dict[str, Any]:
    chunk = submission.chunk()
    cpus = chunk.get("ncpus") or submission.resources.get("ncpus") or "1"
    select = submission.resources.get("select") or f"1:ncpus={cpus}"
    return {
        "ncpus": int(cpus),
        "mem": chunk.get("mem") or submission.resources.get("mem", ""),
        "ngpus": chunk.get("ngpus", ""),
        "select": select,
        # PBS_NODEFILE: each chunk's host once per MPI process (mpiprocs, 1 unless given)
        "node_file_lines": int(chunk.get("count") or 1) * int(chunk.get("mpiprocs") or 1),
        "walltime_seconds": submission.walltime_seconds,
    }


def error_path(submission: Submission) -> str:
    return submission.error_path or f"{submission.name}.e{{sequence}}"


def extra(submission: Submission, queue: str, config: Config) -> dict[str, Any]:
    workdir = os.getcwd()
    variables = {**origin_variables(queue, config.server, workdir), **submission.variables}
    variables.pop("PBS_O_SERVER")  # PBS Pro does not record it; Torque does
    variables["PBS_O_SYSTEM"] = os.uname().sysname
    if submission.export_all:
        variables = {**os.environ, **variables}
    return {
        "account": submission.account,
        "project": submission.project,
        "join": submission.join,
        "variables": variables,
        "arguments": submission.arguments,
        "error_path": os.path.join(workdir, error_path(submission)),
    }


# -- qstat --------------------------------------------------------------------------------------


def qstat(argv: list[str]) -> int:
    if argv == ["--version"]:
        print(f"pbs_version = {PBS_VERSION}")
        return 0
    full = history = as_json = queues = False
    operands: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "-F":
            as_json = next(arguments, "").lower() == "json"
        elif argument.startswith("-") and len(argument) > 1:
            for letter in argument[1:]:
                full |= letter == "f"
                history |= letter in "xH"
                queues |= letter == "Q"
        else:
            operands.append(argument)
    emulator.wait_while_stalled()
    config = emulator.config
    header = {
        "timestamp": int(time.time()),
        "pbs_version": PBS_VERSION,
        "pbs_server": config.server,
    }
    if emulator.server_down:
        if as_json:
            print(json.dumps(header, indent=4, separators=(",", ":")))
        connection_refused("qstat", config)
    if queues:
        return queue_status(header, config, as_json and full)
    listed, errors, status = select(operands, history)
    if as_json and full:
        document = dict(header)
        if listed:
            document["Jobs"] = {job.job_id: attributes(job, config) for job in listed}
        print(json.dumps(document, indent=4, separators=(",", ":"), ensure_ascii=False))
    elif full:
        for job in listed:
            print(full_text(job, config))
    elif listed:
        print(table(listed))
    for error in errors:
        sys.stderr.write(error + "\n")
    return status


def queue_status(header: dict[str, Any], config: Config, as_json: bool) -> int:
    """`qstat -Q -f -F json`: every queue with its jobs counted by state."""
    if not as_json:
        fail("qstat: only -Q -f -F json is emulated", 2)
    jobs = [j for j in emulator.jobs() if j.state != COMPLETED]
    document = dict(header)
    document["Queue"] = {}
    for queue in config.queues:
        mine = [j for j in jobs if j.queue == queue]
        running = [j for j in mine if j.state == RUNNING]
        counts = {
            "Transit": 0,
            "Queued": sum(j.state == QUEUED for j in mine),
            "Held": 0,
            "Waiting": 0,
            "Running": len(running),
            "Exiting": sum(j.state == EXITING for j in mine),
            "Begun": 0,
        }
        document["Queue"][queue] = {
            "queue_type": "Execution",
            "total_jobs": len(mine),
            "state_count": "".join(f"{k}:{v} " for k, v in counts.items()),
            "resources_assigned": {
                "mem": "0kb",
                "ncpus": sum(int(j.resources.get("ncpus", 1)) for j in running),
                "nodect": len(running),
            },
            "hasnodes": "True",
            "enabled": "True",
            "started": "True",
        }
    print(json.dumps(document, indent=4, separators=(",", ":")))
    return 0


# -- pbsnodes -----------------------------------------------------------------------------------


def assigned(cpus: int, gpus: int) -> dict[str, Any]:
    return {"mem": "0kb", "ncpus": cpus} | ({"ngpus": gpus} if gpus else {})


def pbsnodes(argv: list[str]) -> int:
    """`pbsnodes -a -F json`: the one emulated node, its CPUs and GPUs and the jobs on it."""
    if sorted(argv) != sorted(["-a", "-F", "json"]) or argv.index("json") < argv.index("-F"):
        fail("pbsnodes: only -a -F json is emulated", 2)
    emulator.wait_while_stalled()
    config = emulator.config
    if emulator.server_down:
        fail(f"pbsnodes: cannot connect to server {config.server}, error=15010", 1)
    running = [j for j in emulator.jobs() if j.state in (RUNNING, EXITING)]
    cpus = sum(int(j.resources.get("ncpus", 1)) for j in running)
    gpus = sum(int(j.resources.get("ngpus") or 0) for j in running)
    available: dict[str, Any] = {
        "arch": "linux",
        "host": config.node,
        "mem": "16384000kb",
        "ncpus": config.node_cpus,
    }
    if config.node_gpus:
        available["ngpus"] = config.node_gpus
    node: dict[str, Any] = {
        "Mom": config.node,
        "ntype": "PBS",
        "state": "job-busy" if cpus >= config.node_cpus else "free",
        "pcpus": config.node_cpus,
    }
    if running:
        node["jobs"] = [j.job_id for j in running]
    node |= {
        "resources_available": available | {"vnode": config.node},
        "resources_assigned": assigned(cpus, gpus) if running else {},
        "resv_enable": "True",
        "sharing": "default_shared",
        "last_state_change_time": int(time.time()),
    }
    document = {
        "timestamp": int(time.time()),
        "pbs_version": PBS_VERSION,
        "pbs_server": config.server,
        "nodes": {config.node: node},
    }
    print(json.dumps(document, indent=4, separators=(",", ":")))
    return 0


def select(operands: list[str], history: bool) -> tuple[list[Job], list[str], int]:
    """The jobs asked for (all when none named) and the errors the named ones earn."""
    if not operands:
        return [j for j in emulator.jobs() if history or j.state != COMPLETED], [], 0
    listed, errors, status = [], [], 0
    for operand in operands:
        job = emulator.job(operand)
        if job is None:
            errors.append(f"qstat: Unknown Job Id {operand}")
            status = EXIT_UNKNOWN_JOB
        elif job.state == COMPLETED and not history:
            errors.append(
                f"qstat: {job.job_id} Job has finished, use -x or -H to obtain historical job "
                "information"
            )
            status = status or EXIT_HISTORY_JOB
        else:
            listed.append(job)
    return listed, errors, status


def flatten(values: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in values.items():
        if key == "Variable_List":
            pairs.append((key, ",".join(f"{k}={v}" for k, v in value.items())))
        elif isinstance(value, dict):
            pairs.extend((f"{key}.{inner}", str(v)) for inner, v in value.items())
        else:
            pairs.append((key, str(value)))
    return pairs


def full_text(job: Job, config: Config) -> str:
    lines = [f"Job Id: {job.job_id}"]
    lines += [wrapped(name, value) for name, value in flatten(attributes(job, config))]
    return "\n".join(lines) + "\n"


def table(jobs: list[Job]) -> str:
    def cut(text: str) -> str:
        return text if len(text) <= 16 else text[:15] + "*"

    lines = [
        "Job id            Name             User              Time Use S Queue",
        "----------------  ---------------- ----------------  -------- - -----",
    ]
    for job in jobs:
        used = "00:00:00" if job.start_time else "0"
        lines.append(
            f"{cut(job.job_id):<16}  {cut(job.name):<16} {cut(job.owner):<16}  "
            f"{used:>8} {state_letter(job)} {job.queue}"
        )
    return "\n".join(lines)


# -- qdel ---------------------------------------------------------------------------------------


def qdel(argv: list[str]) -> int:
    operands = [a for a in argv if not a.startswith("-")]
    if not operands:
        fail("usage: qdel [-W force|suppress_email=<N>] [-x] job_identifier...", 2)
    emulator.wait_while_stalled()
    if emulator.server_down:
        connection_refused("qdel", emulator.config)
    status = 0
    for operand in operands:
        try:
            emulator.cancel(operand, current_user())
        except UnknownJob:
            sys.stderr.write(f"qdel: Unknown Job Id {operand}\n")
            status = EXIT_UNKNOWN_JOB
        except NotOwner:
            sys.stderr.write(f"qdel: Unauthorized Request  {operand}\n")
            status = EXIT_UNAUTHORIZED
        except AlreadyFinished as finished:
            sys.stderr.write(f"qdel: Job has finished {finished.job.job_id}\n")
            status = EXIT_HISTORY_JOB
    return status
