"""IBM Spectrum LSF 10.1 dialect: bsub, bjobs, bkill, bhist and lsid print what the real ones print.

Sources of the texts: IBM's LSF 10.1 command reference (bsub/bjobs/bkill/bhist/lsid pages, the
`-o ... -json` layout, pending reasons and TERM_* exit reasons), bjobs -json records captured in
TheRoddyWMS/BatchEuphoria's tests, `bjobs -l` of a run-limit job quoted in an HPC how-to, and
batchspawner's LSF tests (bsub's answer, EXEC_HOST forms); the bqueues and bhosts tables as sites'
user guides show them. See tests/fixtures/lsf/README.md.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import sys
import time

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

VERSION_LINE = "IBM Spectrum LSF Standard 10.1.0.13, Nov 10 2022"
CLUSTER = "cluster1"
NOT_RESPONDING = "batch system daemon not responding ... still trying"
CANNOT_CONNECT = "Cannot connect to LSF. Please wait ..."
NEW_JOB_REASON = "New job is waiting for scheduling;"
#: the queues' priorities (lsb.queues PRIORITY), shown by bqueues
QUEUE_PRIORITY = {"normal": 30, "short": 35, "long": 20}
#: bjobs lists unfinished jobs running first, then pending in dispatch order, then finished ones
LISTING_ORDER = {RUNNING: 0, EXITING: 0, QUEUED: 1, COMPLETED: 2}
#: bsub options that take a value (IBM bsub reference); the others used here are flags.
BSUB_VALUE_OPTIONS = {
    "-J", "-Jd", "-o", "-oo", "-e", "-eo", "-n", "-R", "-M", "-W", "-q", "-P", "-gpu", "-cwd",
    "-L", "-G", "-app", "-sla", "-m", "-u", "-env", "-i", "-b", "-w", "-E", "-Ep", "-g",
}  # fmt: skip
FIELDS = {
    "jobid": "JOBID",
    "job_name": "JOB_NAME",
    "stat": "STAT",
    "user": "USER",
    "queue": "QUEUE",
    "proj_name": "PROJ_NAME",
    "from_host": "FROM_HOST",
    "exec_host": "EXEC_HOST",
    "pend_reason": "PEND_REASON",
    "exit_code": "EXIT_CODE",
    "exit_reason": "EXIT_REASON",
    "submit_time": "SUBMIT_TIME",
    "start_time": "START_TIME",
    "finish_time": "FINISH_TIME",
    "nreq_slot": "NREQ_SLOT",
    "job_description": "JOB_DESCRIPTION",
}


def environment(job: Job, config: Config) -> dict[str, str]:
    """What LSF's sbatchd sets for a job (IBM: "Environment variables set for job execution")."""
    slots = int(job.resources.get("ncpus") or 1)
    return {
        "LSB_JOBID": str(job.sequence),
        "LSB_JOBNAME": job.name,
        "LSB_QUEUE": job.queue,
        "LSB_HOSTS": " ".join([config.node] * slots),
        "LSB_MCPU_HOSTS": f"{config.node} {slots}",
        "LSB_DJOB_NUMPROC": str(slots),
        "LSB_DJOB_HOSTFILE": job.node_file,  # the host once per slot, like LSB_HOSTS
        "LSB_JOBINDEX": "0",
        "LSB_SUBCWD": job.workdir,
        "LSB_EXEC_CLUSTER": CLUSTER,
        "LSFUSER": job.owner,
    }


emulator = Emulator(
    "lsf",
    environment=environment,
    job_id_format="{sequence}",
    wait_reason="The queue has reached its job slot limit;",
    defaults={"queues": ["normal", "short", "long"], "default_queue": "normal"},
)


def lsf_time(stamp: float | None) -> str:
    return time.strftime("%b %e %H:%M", time.localtime(stamp)) if stamp else ""


def event_time(stamp: float | None) -> str:
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(stamp or time.time()))


def stat(job: Job) -> str:
    if job.state == QUEUED:
        return "PEND"
    if job.state != COMPLETED:
        return "RUN"
    if job.cancelled_by or job.walltime_exceeded or job.exit_code != 0:
        return "EXIT"
    return "DONE"


def exit_code(job: Job) -> str:
    if stat(job) != "EXIT":
        return ""
    if job.exit_code is not None:
        return str(job.exit_code)
    return str(128 + job.signal) if job.signal else ""


def exit_reason(job: Job) -> str:
    if job.state != COMPLETED:
        return ""
    if job.walltime_exceeded:
        return "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
    if job.cancelled_by == "root":
        return "TERM_ADMIN: job killed by root or LSF administrator"
    if job.cancelled_by:
        return "TERM_OWNER: job killed by owner"
    return ""


def exec_host(job: Job) -> str:
    """One entry per slot, `host:host`, as LSF lists a multi-slot job on one host."""
    if not job.exec_host:
        return ""
    return ":".join([job.exec_host] * int(job.resources.get("ncpus") or 1))


def field_value(job: Job, field: str) -> str:
    values = {
        "JOBID": str(job.sequence),
        "JOB_NAME": job.name,
        "STAT": stat(job),
        "USER": job.owner,
        "QUEUE": job.queue,
        "PROJ_NAME": job.extra.get("project") or "default",
        "FROM_HOST": job.submit_host.split(".")[0],
        "EXEC_HOST": exec_host(job),
        "PEND_REASON": (job.reason or NEW_JOB_REASON) if job.state == QUEUED else "",
        "EXIT_CODE": exit_code(job),
        "EXIT_REASON": exit_reason(job),
        "SUBMIT_TIME": lsf_time(job.submit_time),
        "START_TIME": lsf_time(job.start_time),
        "FINISH_TIME": lsf_time(job.end_time) + " L" if job.state == COMPLETED else "",
        "NREQ_SLOT": str(job.resources.get("ncpus") or 1),
        "JOB_DESCRIPTION": job.extra.get("description", ""),
    }
    return values[field]


def lsf_json(records: list[dict[str, str]]) -> str:
    """LSF's JSON: two-space indentation, no space after ':', '/' escaped as '\\/'."""

    def encoded(value: str) -> str:
        return json.dumps(value).replace("/", "\\/")

    lines = ["{", '  "COMMAND":"bjobs",', f'  "JOBS":{len(records)},', '  "RECORDS":[']
    for number, record in enumerate(records):
        lines.append("    {")
        items = list(record.items())
        for position, (key, value) in enumerate(items):
            comma = "," if position < len(items) - 1 else ""
            lines.append(f'      "{key}":{encoded(value)}{comma}')
        lines.append("    }," if number < len(records) - 1 else "    }")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def walltime_seconds(text: str) -> int:
    """-W [hour:]minute."""
    parts = [int(part) for part in text.split(":")]
    return (parts[0] * 60 + parts[1]) * 60 if len(parts) == 2 else parts[0] * 60


def memory_mb(text: str) -> int:
    units = {"KB": 1 / 1024, "K": 1 / 1024, "MB": 1, "M": 1, "GB": 1024, "G": 1024, "TB": 1 << 20}
    number = text.rstrip("KMGTBkmgtb")
    return int(float(number) * units.get(text[len(number) :].upper(), 1 / 1024))


def directives(script: str) -> list[str]:
    """The arguments of the #BSUB lines, read (like bsub) up to the first command line."""
    arguments: list[str] = []
    for line in script.splitlines()[1:] if script.startswith("#!") else script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if stripped.startswith("#BSUB"):
            arguments += shlex.split(stripped[len("#BSUB") :], comments=True)
    return arguments


def parse_options(arguments: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    options: dict[str, list[str]] = {}
    position = 0
    while position < len(arguments) and arguments[position].startswith("-"):
        option = arguments[position]
        if option in BSUB_VALUE_OPTIONS:
            if position + 1 >= len(arguments):
                fail(f"{option}: option requires an argument.", 255)
            options.setdefault(option, []).append(arguments[position + 1])
            position += 2
        else:
            options.setdefault(option, []).append("")
            position += 1
    return options, arguments[position:]


def bsub(arguments: list[str]) -> int:
    if arguments == ["-V"]:
        fail(VERSION_LINE, 0)
    options, command = parse_options(arguments)
    if command:
        fail("bsub: this emulator takes the job script on standard input only", 255)
    script = sys.stdin.read()
    # The command line wins over the script's directives.
    embedded, _ = parse_options(directives(script))
    settings = {**embedded, **options}
    if emulator.server_down:
        fail(f"{CANNOT_CONNECT}\n" * 3, 255)
    emulator.wait_while_stalled()
    config = emulator.config
    queue = settings.get("-q", [config.default_queue])[-1]
    if queue not in config.queues:
        fail(f"{queue}: No such queue. Job not submitted.", 255)
    slots = int(settings.get("-n", ["1"])[-1])
    resources: dict[str, object] = {"ncpus": slots}
    if "-W" in settings:
        resources["walltime_seconds"] = walltime_seconds(settings["-W"][-1])
    if "-M" in settings:
        resources["mem_mb"] = memory_mb(settings["-M"][-1])
    if "-gpu" in settings:
        resources["gpu"] = settings["-gpu"][-1]
    resources["requirements"] = settings.get("-R", [])
    output = settings.get("-o", settings.get("-oo", [""]))[-1]
    error = settings.get("-e", settings.get("-eo", [""]))[-1]
    name = settings.get("-J", ["NONAME"])[-1]

    def path(text: str) -> str | None:
        text = text.replace("{", "{{").replace("}", "}}")
        return text.replace("%J", "{sequence}").replace("%I", "0") or None

    job = emulator.submit(
        script,
        current_user(),
        name,
        resources,
        queue,
        path(output) or "/dev/null",  # no -o: LSF mails the output; nothing here reads mail
        {
            "project": settings.get("-P", ["default"])[-1],
            "description": settings.get("-Jd", [""])[-1],
        },
        error_path=path(error),
    )
    where = "queue" if "-q" in settings else "default queue"
    print(f"Job <{job.sequence}> is submitted to {where} <{queue}>.")
    return 0


def selected(arguments: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    options: dict[str, list[str]] = {}
    ids: list[str] = []
    valued = {"-u", "-J", "-o", "-q", "-P", "-m", "-n"}
    position = 0
    while position < len(arguments):
        argument = arguments[position]
        if argument in valued:
            options.setdefault(argument, []).append(arguments[position + 1])
            position += 2
        elif argument.startswith("-"):
            options.setdefault(argument, []).append("")
            position += 1
        else:
            ids.append(argument)
            position += 1
    return options, ids


def matching(options: dict[str, list[str]], include_finished: bool) -> list[Job]:
    user = options.get("-u", [current_user()])[-1]
    name = options.get("-J", [""])[-1]
    found = []
    for job in emulator.jobs():
        if user != "all" and job.owner != user:
            continue
        if name and not fnmatch.fnmatchcase(job.name, name):
            continue
        if job.state == COMPLETED and not include_finished:
            continue
        found.append(job)
    return found


def bjobs(arguments: list[str]) -> int:
    if arguments == ["-V"]:
        fail(VERSION_LINE, 0)
    if emulator.server_down:
        fail(NOT_RESPONDING, 255)
    emulator.wait_while_stalled()
    options, ids = selected(arguments)
    errors: list[str] = []
    if ids:
        jobs = []
        for job_id in ids:
            job = emulator.job(job_id)
            if job is None:
                errors.append(f"Job <{job_id}> is not found")
            else:
                jobs.append(job)
    else:
        jobs = matching(options, include_finished="-a" in options or "-d" in options)
        jobs.sort(key=lambda job: LISTING_ORDER[job.state])
    if "-o" in options:
        fields = [FIELDS[name.split(":")[0].lower()] for name in options["-o"][-1].split()]
    else:
        fields = ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME"]
        fields.append("SUBMIT_TIME")
    if "-json" in options:
        records = [{field: field_value(job, field) for field in fields} for job in jobs]
        records += [{"ERROR": error} for error in errors]
        if not records:
            fail("No job found", 255)
        sys.stdout.write(lsf_json(records))
        return 0
    for error in errors:
        sys.stderr.write(error + "\n")
    if not jobs:
        if not errors:
            fail("No job found" if "-a" in options else "No unfinished job found", 255)
        return 255
    if "-noheader" not in options:
        print(" ".join(f"{field:<10}" for field in fields).rstrip())
    for job in jobs:
        print(" ".join(f"{field_value(job, field) or '-':<10}" for field in fields).rstrip())
    return 255 if errors else 0


def bkill(arguments: list[str]) -> int:
    if emulator.server_down:
        fail(NOT_RESPONDING, 255)
    emulator.wait_while_stalled()
    _, ids = selected(arguments)
    status = 0
    for job_id in ids:
        try:
            emulator.cancel(job_id, current_user())
            print(f"Job <{job_id}> is being terminated")
        except UnknownJob:
            sys.stderr.write(f"Job <{job_id}>: No matching job found\n")
            status = 255
        except NotOwner:
            sys.stderr.write(f"Job <{job_id}>: User permission denied\n")
            status = 255
        except AlreadyFinished:
            sys.stderr.write(f"Job <{job_id}>: Job has already finished\n")
            status = 255
    return status


def history(job: Job) -> list[str]:
    """A job's bhist -l block, lines not yet wrapped."""
    slots = int(job.resources.get("ncpus") or 1)
    host_list = " ".join(f"<{job.exec_host}>" for _ in range(slots))
    lines = [
        f"Job <{job.sequence}>, Job Name <{job.name}>, User <{job.owner}>, Project "
        f"<{job.extra.get('project') or 'default'}>, Command <#!/bin/bash>",
        f"{event_time(job.submit_time)}: Submitted from host <{job.submit_host.split('.')[0]}>,"
        f" to Queue <{job.queue}>, CWD <{job.workdir}>, {slots} Task(s);",
    ]
    if job.start_time:
        lines.append(
            f"{event_time(job.start_time)}: Dispatched {slots} Task(s) on Host(s) {host_list},"
            f" Allocated {slots} Slot(s) on Host(s) {host_list}, Effective RES_REQ"
            " <select[type == local] order[r15s:pg] >;"
        )
        lines.append(f"{event_time(job.start_time)}: Starting (Pid {job.job_pgid or 0});")
    if job.state == COMPLETED:
        end = event_time(job.end_time)
        if job.cancelled_by:
            lines.append(
                f"{end}: Signal <KILL> requested by user or administrator <{job.cancelled_by}>;"
            )
        if stat(job) == "DONE":
            lines.append(f"{end}: Done successfully. The CPU time used is 0.0 seconds;")
        elif job.exit_code is not None:
            lines.append(
                f"{end}: Exited with exit code {job.exit_code}. The CPU time used is 0.0 seconds."
            )
        elif job.signal:
            lines.append(f"{end}: Exited by signal {job.signal}. The CPU time used is 0.0 seconds.")
        reason = exit_reason(job)
        kind = "done" if stat(job) == "DONE" else "exit"
        lines.append(f"{end}: Completed <{kind}>" + (f"; {reason}." if reason else "."))
    lines += [
        "",
        f"Summary of time in seconds spent in various states by  {event_time(job.end_time)}",
        "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL",
    ]
    pending = int((job.start_time or job.end_time or time.time()) - job.submit_time)
    running = int((job.end_time or time.time()) - job.start_time) if job.start_time else 0
    lines.append(
        f"  {pending:<9}0        {running:<9}0        0        0        {pending + running}"
    )
    return lines


def wrapped(line: str, width: int = 79, indent: str = " " * 21) -> list[str]:
    pieces = [line[:width]]
    rest = line[width:]
    while rest:
        pieces.append((indent + rest)[:width])
        rest = (indent + rest)[width:]
    return pieces


def bhist(arguments: list[str]) -> int:
    if emulator.server_down:
        fail(NOT_RESPONDING, 255)
    emulator.wait_while_stalled()
    options, ids = selected(arguments)
    if ids:
        jobs = [job for job in (emulator.job(job_id) for job_id in ids) if job is not None]
    else:
        jobs = matching(options, include_finished="-a" in options or "-d" in options)
        jobs.sort(key=lambda job: LISTING_ORDER[job.state])
    if not jobs:
        fail("No matching job found", 255)
    blocks = []
    for job in jobs:
        blocks.append("\n".join(piece for line in history(job) for piece in wrapped(line)))
    print(("\n" + "-" * 78 + "\n\n").join(blocks))
    return 0


def bqueues(arguments: list[str]) -> int:
    """`bqueues [-w]`: every queue with its status and its jobs counted by state."""
    if emulator.server_down:
        fail(NOT_RESPONDING, 255)
    emulator.wait_while_stalled()
    jobs = [j for j in emulator.jobs() if j.state != COMPLETED]
    print(
        "QUEUE_NAME      PRIO STATUS          MAX JL/U JL/P JL/H NJOBS  PEND   RUN  SUSP  RSV PJOBS"
    )
    for queue in emulator.config.queues:
        pending = sum(j.state == QUEUED for j in jobs if j.queue == queue)
        running = sum(j.state != QUEUED for j in jobs if j.queue == queue)
        print(
            f"{queue:<15} {QUEUE_PRIORITY.get(queue, 30):>4}  {'Open:Active':<14}"
            f"{'-':>5}{'-':>5}{'-':>5}{'-':>5}{pending + running:>6}{pending:>6}{running:>6}"
            f"{0:>6}{0:>5}{pending:>6}"
        )
    return 0


def bhosts(arguments: list[str]) -> int:
    """`bhosts [-w]`: the one emulated host, its job slots (one per CPU) and those in use."""
    if emulator.server_down:
        fail(NOT_RESPONDING, 255)
    emulator.wait_while_stalled()
    config = emulator.config
    running = [j for j in emulator.jobs() if j.state in (RUNNING, EXITING)]
    slots = sum(int(j.resources.get("ncpus") or 1) for j in running)
    status = "ok" if slots < config.node_cpus else "closed_Full"
    print("HOST_NAME          STATUS          JL/U    MAX  NJOBS    RUN  SSUSP  USUSP    RSV")
    print(
        f"{config.node:<18} {status:<15} {'-':>4} {config.node_cpus:>6} {slots:>6} {slots:>6}"
        f" {0:>6} {0:>6} {0:>6}"
    )
    return 0


def lsid(arguments: list[str]) -> int:
    if emulator.server_down:
        fail("LSF is down. Please wait ...", 255)
    print(VERSION_LINE)
    print("Copyright International Business Machines Corp. 1992, 2016.")
    print(
        "US Government Users Restricted Rights - Use, duplication or disclosure restricted by "
        "GSA ADP Schedule Contract with IBM Corp."
    )
    print(f"\nMy cluster name is {CLUSTER}\nMy master name is {emulator.config.server}")
    return 0
