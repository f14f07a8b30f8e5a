"""Torque (6.1) dialect: qsub, qstat and qdel print what the real ones print.

Sources of the texts: Torque src/cmds/qstat.c (the connection retries and messages, exit
statuses), `qstat -x` captured from Torque sites (fyrd's, OTP's and osc/machete's test data),
pbs_server's error texts as `qstat`/`qdel` print them ("Unknown Job Id Error", "Request invalid
for state of job"), and the FIFO scheduler's comment texts (Torque src/scheduler.cc/samples/fifo);
the `qstat -Q` table as sites' user guides show it, `pbsnodes -x` as captured in RAL's and
other projects' tests (tests/fixtures/torque/README.md).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any
from xml.sax.saxutils import escape

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

TORQUE_VERSION = "6.1.3"
#: qsub's getopt string (Torque src/cmds/qsub_functions.c)
QSUB_OPTIONS = "a:A:b:c:C:d:D:e:fF:hIj:k:K:l:L:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:xXz"
EXIT_UNKNOWN_JOB = 15001 % 256
EXIT_UNAUTHORIZED = 15007 % 256
EXIT_BAD_STATE = 15018 % 256
ECONNREFUSED = 111
WALLTIME_EXCEEDED = -11  # JOB_EXEC_OVERLIMIT_WT
TIME_ATTRIBUTES = {"ctime", "mtime", "qtime", "etime", "start_time", "comp_time"}


def environment(job: Job, config: Config) -> dict[str, str]:
    """What pbs_mom sets for a job, on top of its Variable_List."""
    cpus = str(job.resources.get("ncpus", 1))
    values = {
        **job.extra.get("variables", {}),
        "PBS_JOBID": job.job_id,
        "PBS_JOBNAME": job.name,
        "PBS_QUEUE": job.queue,
        "PBS_SERVER": config.server,
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_NODEFILE": job.node_file,
        "PBS_NODENUM": "0",
        "PBS_TASKNUM": "1",
        "PBS_VNODENUM": "0",
        "PBS_MOMPORT": "15003",
        "PBS_NUM_NODES": "1",
        "PBS_NUM_PPN": cpus,
        "PBS_NP": cpus,
        "PBS_VERSION": f"TORQUE-{TORQUE_VERSION}",
    }
    if job.walltime_seconds:
        values["PBS_WALLTIME"] = str(job.walltime_seconds)
    return values


emulator = Emulator(
    "torque",
    environment=environment,
    wait_reason="Not Running: Server job limit has been reached.",
    defaults={"queues": ["batch", "debug"], "default_queue": "batch", "keep_finished_seconds": 300},
)


def connection_refused(command: str, config: Config) -> None:
    """cnt2server() tries three times, each failure explained, before the command gives up."""
    try:
        address = socket.gethostbyname(config.server)
    except OSError:
        address = "0.0.0.0"
    attempt = (
        f"\nUnable to communicate with {config.server}({address})\n"
        f"Cannot connect to default server host '{config.server}' - check pbs_server daemon "
        "and/or trqauthd.\n"
    )
    fail(
        attempt * 3 + f"{command}: cannot connect to server {config.server} "
        f"(errno={ECONNREFUSED}) Connection refused",
        ECONNREFUSED,
    )


def state_letter(job: Job) -> str:
    return {QUEUED: "Q", RUNNING: "R", EXITING: "E", COMPLETED: "C"}[job.state]


def exit_status(job: Job) -> int | None:
    if job.walltime_exceeded:
        return WALLTIME_EXCEEDED
    if job.signal is not None:
        return 256 + job.signal
    return job.exit_code


def exec_host(job: Job, config: Config) -> str:
    cpus = int(job.resources.get("ncpus", 1))
    return f"{config.node}/0" if cpus == 1 else f"{config.node}/0-{cpus - 1}"


def attributes(job: Job, config: Config) -> dict[str, Any]:
    """A job's attributes in the order pbs_server reports them (times as epoch seconds)."""
    state = state_letter(job)
    started = job.start_time is not None
    now = time.time()
    values: dict[str, Any] = {"Job_Name": job.name, "Job_Owner": f"{job.owner}@{job.submit_host}"}
    if started:
        values["resources_used"] = {
            "cput": "00:00:00",
            "energy_used": "0",
            "mem": "0kb",
            "vmem": "0kb",
            "walltime": duration((job.end_time or now) - (job.start_time or now)),
        }
    values |= {"job_state": state, "queue": job.queue, "server": config.server}
    if job.extra.get("account"):
        values["Account_Name"] = job.extra["account"]
    values |= {
        "Checkpoint": "u",
        "ctime": int(job.submit_time),
        "Error_Path": f"{job.submit_host}:{job.extra['error_path'].format(sequence=job.sequence)}",
    }
    if started:
        values["exec_host"] = exec_host(job, config)
    values |= {
        "Hold_Types": "n",
        "Join_Path": job.extra.get("join", "n"),
        "Keep_Files": "n",
        "Mail_Points": "a",
        "mtime": int(job.end_time or job.start_time or job.submit_time),
        "Output_Path": f"{job.submit_host}:{job.output_path}",
        "Priority": 0,
        "qtime": int(job.submit_time),
        "Rerunable": "True",
        "Resource_List": resource_list(job),
    }
    if started:
        values["session_id"] = job.job_pgid or 0
    values |= {
        "Shell_Path_List": "/bin/bash",
        "Variable_List": job.extra.get("variables", {}),
        "euser": job.owner,
        "egroup": job.owner,
        "queue_type": "E",
    }
    if job.state == QUEUED and job.reason:
        values["comment"] = job.reason
    values["etime"] = int(job.submit_time)
    if state == "C" and started:
        values["exit_status"] = exit_status(job)
    if job.extra.get("arguments"):
        values["submit_args"] = " ".join(job.extra["arguments"])
    if started:
        values |= {"start_time": int(job.start_time or now), "start_count": 1}
    values["fault_tolerant"] = "False"
    if state == "C":
        values["comp_time"] = int(job.end_time or now)
    values["job_radix"] = 0
    if state == "C" and started:
        values["total_runtime"] = f"{(job.end_time or now) - (job.start_time or now):.6f}"
    values |= {"submit_host": job.submit_host, "request_version": 1}
    return values


def resource_list(job: Job) -> dict[str, Any]:
    listed: dict[str, Any] = {}
    if job.resources.get("mem"):
        listed["mem"] = job.resources["mem"]
    listed |= {"nodect": 1, "nodes": job.resources.get("nodes")}
    if job.extra.get("qos"):
        listed["qos"] = job.extra["qos"]
    if job.walltime_seconds:
        listed["walltime"] = duration(job.walltime_seconds)
    return listed


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
    if submission.hold or "-I" in argv or "-t" in argv:
        fail("qsub: holds, interactive and array jobs are not emulated", 2)
    queue = submission.queue or config.default_queue
    if queue not in config.queues:
        fail("qsub: submit error (Unknown queue MSG=requested queue not found)", 1)
    spec = submission.nodes_spec()
    cpus = int(spec.get("ppn") or 1)
    job = emulator.submit(
        submission.script,
        current_user(),
        submission.name,
        {
            "ncpus": cpus,
            "mem": submission.resources.get("mem", ""),
            "gpus": spec.get("gpus", ""),
            "nodes": submission.resources.get("nodes") or f"1:ppn={cpus}",
            "node_file_lines": int(spec.get("count") or 1) * cpus,  # each node once per ppn
            "walltime_seconds": submission.walltime_seconds,
        },
        queue,
        submission.output_path or f"{submission.name}.o{{sequence}}",
        extra(submission, queue, config),
        error_path=None if submission.join == "oe" else error_path(submission),
    )
    if not submission.quiet:
        print(job.job_id)
    return 0


def error_path(submission: Submission) -> str:
    return submission.error_path or f"{submission.name}.e{{sequence}}"


def extra(submission: Submission, queue: str, config: Config) -> dict[str, Any]:
    workdir = os.getcwd()
    variables = {**origin_variables(queue, config.server, workdir), **submission.variables}
    if submission.export_all:
        variables = {**os.environ, **variables}
    return {
        "account": submission.account,
        "qos": submission.additional.get("x", "").removeprefix("QOS:"),
        "join": submission.join,
        "variables": variables,
        "arguments": submission.arguments,
        "error_path": os.path.join(workdir, error_path(submission)),
    }


# -- qstat --------------------------------------------------------------------------------------


def qstat(argv: list[str]) -> int:
    if argv == ["--version"]:
        print(f"Version: {TORQUE_VERSION}")
        return 0
    full = xml = queues = False
    operands = []
    for argument in argv:
        if argument.startswith("-") and len(argument) > 1:
            full |= "f" in argument
            xml |= "x" in argument
            queues |= "Q" in argument
        else:
            operands.append(argument)
    emulator.wait_while_stalled()
    config = emulator.config
    if emulator.server_down:
        connection_refused("qstat", config)
    if queues:
        print(queue_table(config))
        return 0
    listed, errors = [], []
    for operand in operands:
        job = emulator.job(operand)
        if job is None:
            errors.append(f"qstat: Unknown Job Id Error {operand}")
        else:
            listed.append(job)
    if not operands:
        listed = emulator.jobs()
    if xml:
        print(f'<?xml version="1.0"?>\n{data_xml(listed, config)}')
    elif full:
        for job in listed:
            print(full_text(job, config))
    elif listed:
        print(table(listed))
    for error in errors:
        sys.stderr.write(error + "\n")
    return EXIT_UNKNOWN_JOB if errors else 0


def queue_table(config: Config) -> str:
    """`qstat -Q`: every queue, enabled and started, its jobs counted by state."""
    lines = [
        "Queue              Max    Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T   Cpt",
        "----------------   ---   ----    --    --   ---   ---   ---   ---   ---   --- -   ---",
    ]
    jobs = emulator.jobs()
    for queue in config.queues:
        mine = [j for j in jobs if j.queue == queue]
        counts = [sum(j.state == state for j in mine) for state in (QUEUED, RUNNING, EXITING)]
        completed = sum(j.state == COMPLETED for j in mine)
        lines.append(
            f"{queue:<16} {0:>5} {len(mine):>6} {'yes':>5} {'yes':>5} {counts[0]:>5} {counts[1]:>5}"
            f" {0:>5} {0:>5} {0:>5} {counts[2]:>5} E {completed:>5}"
        )
    return "\n".join(lines)


def pbsnodes(argv: list[str]) -> int:
    """`pbsnodes -x`: the one emulated node, its processors, GPUs and job slots in use."""
    if argv != ["-x"]:
        fail("pbsnodes: only -x is emulated", 2)
    emulator.wait_while_stalled()
    config = emulator.config
    if emulator.server_down:
        connection_refused("pbsnodes", config)
    running = [j for j in emulator.jobs() if j.state in (RUNNING, EXITING)]
    slots = [
        f"{slot}/{job.job_id}"
        for job in running
        for slot in range(int(job.resources.get("ncpus") or 1))
    ]
    state = "job-exclusive" if len(slots) >= config.node_cpus else "free"
    node = (
        f"<name>{config.node}</name><state>{state}</state><power_state>Running</power_state>"
        f"<np>{config.node_cpus}</np><ntype>cluster</ntype>"
        + (f"<jobs>{', '.join(slots)}</jobs>" if slots else "")
        + f"<status>rectime={int(time.time())},state=free,ncpus={config.node_cpus}</status>"
        + "<mom_service_port>15002</mom_service_port><mom_manager_port>15003</mom_manager_port>"
        # only a Torque built with GPU support lists <gpus>
        + (f"<gpus>{config.node_gpus}</gpus>" if config.node_gpus else "")
    )
    print(f"<Data><Node>{node}</Node></Data>")
    return 0


def element(name: str, value: Any) -> str:
    if isinstance(value, dict):
        if name == "Variable_List":
            inner = escape(",".join(f"{k}={v}" for k, v in value.items()))
        else:
            inner = "".join(element(key, item) for key, item in value.items())
        return f"<{name}>{inner}</{name}>"
    return f"<{name}>{escape(str(value))}</{name}>"


def data_xml(jobs: list[Job], config: Config) -> str:
    body = "".join(
        "<Job>"
        + element("Job_Id", job.job_id)
        + "".join(element(name, value) for name, value in attributes(job, config).items())
        + "</Job>"
        for job in jobs
    )
    return f"<Data>{body}</Data>"


def full_text(job: Job, config: Config) -> str:
    lines = [f"Job Id: {job.job_id}"]
    for name, value in attributes(job, config).items():
        if name == "Variable_List":
            lines.append(wrapped(name, ",".join(f"{k}={v}" for k, v in value.items()), 77))
        elif isinstance(value, dict):
            lines += [wrapped(f"{name}.{key}", str(item), 77) for key, item in value.items()]
        elif name in TIME_ATTRIBUTES:
            lines.append(wrapped(name, time.ctime(value), 77))
        else:
            lines.append(wrapped(name, str(value), 77))
    return "\n".join(lines) + "\n"


def table(jobs: list[Job]) -> str:
    lines = [
        "Job ID                    Name             User            Time Use S Queue",
        "------------------------- ---------------- --------------- -------- - -----",
    ]
    for job in jobs:
        used = "00:00:00" if job.start_time else "0"
        lines.append(
            f"{job.job_id[:25]:<25} {job.name[:16]:<16} {job.owner[:15]:<15} "
            f"{used:>8} {state_letter(job)} {job.queue}"
        )
    return "\n".join(lines)


# -- qdel ---------------------------------------------------------------------------------------


def qdel(argv: list[str]) -> int:
    operands = [a for a in argv if not a.startswith("-")]
    if not operands:
        fail(
            "usage: qdel [{ -a | -c | -p | -t | -W delay | -m message}] <JOBID>[ <JOBID>]|'all'", 2
        )
    emulator.wait_while_stalled()
    if emulator.server_down:
        connection_refused("qdel", emulator.config)
    status = 0
    for operand in operands:
        try:
            emulator.cancel(operand, current_user())
        except UnknownJob:
            sys.stderr.write(f"qdel: Unknown Job Id Error {operand}\n")
            status = EXIT_UNKNOWN_JOB
        except NotOwner:
            sys.stderr.write(f"qdel: Unauthorized Request  {operand}\n")
            status = EXIT_UNAUTHORIZED
        except AlreadyFinished as finished:
            sys.stderr.write(
                "qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE "
                f"{finished.job.job_id}\n"
            )
            status = EXIT_BAD_STATE
    return status
