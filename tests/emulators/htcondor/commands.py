"""HTCondor 23 dialect: condor_submit, condor_q, condor_rm, condor_history and condor_version print
what the real ones print, and condor_submit really interprets the submit description.

Sources: the HTCondor manual (condor_submit's options and submit commands, arguments/environment
"new syntax", macros $(ClusterId) $(ProcId) $ENV(), job ClassAd attributes and JobStatus codes,
condor_q/condor_history -json layout, condor_rm messages) and the tool texts quoted in
tests/fixtures/htcondor/README.md.

What the emulator does not do: it runs the job in place on a shared file system (as a pool with
should_transfer_files = NO does) and evaluates no ClassAd expressions but two: constraints of the
form `stringListMember(Attr, "a,b")` / `Attr == value`, and the walltime idiom
`periodic_remove = ... time() - JobCurrentStartDate > N`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from core import (
    COMPLETED,
    EXITING,
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

VERSION = "23.4.0"
SCHEDD_ADDRESS = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={server}&noUDP&sock=schedd_1_1>"
WALLTIME = re.compile(r"time\(\)\s*-\s*JobCurrentStartDate\s*>\s*(\d+)")
MACRO = re.compile(r"\$(ENV)?\(([A-Za-z_][A-Za-z0-9_.]*)\)")
LIST_MEMBER = re.compile(r'^\s*stringListMember\(\s*(\w+)\s*,\s*"([^"]*)"\s*\)\s*$', re.I)
EQUALS = re.compile(r'^\s*(\w+)\s*(?:==|=\?=)\s*("?)([^"]*)\2\s*$')
#: submit commands whose value becomes a job ClassAd attribute of another name
ATTRIBUTE_OF = {
    "executable": "Cmd",
    "output": "Out",
    "error": "Err",
    "accounting_group": "AcctGroup",
    "batch_name": "JobBatchName",
    "periodic_remove": "PeriodicRemove",
    "universe": "JobUniverse",
}


def environment(job: Job, config: Config) -> dict[str, str]:
    """The starter's variables; the job's own environment is set by its wrapper (env -i)."""
    return {}


emulator = Emulator(
    "htcondor",
    environment=environment,
    job_id_format="{sequence}.0",
)


def schedd_unreachable(config: Config) -> str:
    address = SCHEDD_ADDRESS.format(server=config.server)
    return f"CEDAR:6001:Failed to connect to {address}"


# -- the submit language -------------------------------------------------------------------------


class SubmitError(Exception):
    """condor_submit's own complaint."""


def description_lines(text: str) -> list[str]:
    """Logical lines: comments dropped, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((pending + line).strip())
        pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def parse_description(lines: list[str], commands: dict[str, str]) -> str | None:
    """Add each `key = value` to commands (keys are case-insensitive); return the queue
    statement's arguments, or None if there is none."""
    for line in lines:
        if re.match(r"^queue\b", line, re.I):
            return line[5:].strip()
        if "=" not in line:
            raise SubmitError(f"ERROR: on Line 1 of submit file: \n Unrecognized line: {line}")
        key, value = (part.strip() for part in line.split("=", 1))
        commands[key.lower() if not key.startswith(("+", "MY.", "my.")) else key] = value
    return None


def expand(value: str, commands: dict[str, str], cluster: int) -> str:
    def replace(match: re.Match) -> str:
        if match[1]:
            return os.environ.get(match[2], "")
        name = match[2].lower()
        if name in ("clusterid", "cluster"):
            return str(cluster)
        if name in ("procid", "process"):
            return "0"
        return expand(commands.get(name, ""), commands, cluster)

    return MACRO.sub(replace, value)


def split_arguments(value: str) -> list[str]:
    """`arguments`: new syntax when double-quoted (spaces separate, '' quotes, "" is a
    literal quote), else the old syntax (spaces separate)."""
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        return shlex.split(value[1:-1].replace('""', '\\"'))
    return value.split()


def split_environment(value: str) -> dict[str, str]:
    """`environment`: new syntax when double-quoted (`"A=1 B='x y'"`), else `A=1;B=2`."""
    value = value.strip()
    if value.startswith('"') and value.endswith('"'):
        pairs = shlex.split(value[1:-1].replace('""', '\\"'))
    else:
        pairs = [pair for pair in value.split(";") if pair]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def memory_mb(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", value, re.I)
    if not match:
        raise SubmitError(f"ERROR: request_memory = {value} is not a valid size")
    scale = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}[match[2].upper()]
    return int(float(match[1]) * scale)


def classad_literal(value: str) -> Any:
    """A custom attribute's value as the job ad holds it: a string, a number or a boolean."""
    text = value.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # an expression: kept as its text


def settings() -> dict[str, Any]:
    """The site's extra settings in config.json (e.g. the accounting groups it knows)."""
    try:
        return json.loads((emulator.spool / "config.json").read_text())
    except FileNotFoundError:
        return {}


def condor_submit(arguments: list[str]) -> int:
    commands: dict[str, str] = {}
    appended: list[str] = []
    queue_arguments: str | None = None
    description_file: str | None = None
    terse, batch_name = False, ""
    position = 0
    while position < len(arguments):
        argument = arguments[position]
        if argument in ("-batch-name", "-file", "-append", "-name", "-pool", "-remote", "-addr"):
            value = arguments[position + 1]
            if argument == "-batch-name":
                batch_name = value
            elif argument == "-file":
                description_file = value
            elif argument == "-append":
                appended.append(value)
            position += 2
        elif argument == "-queue":
            rest = arguments[position + 1 :]
            stop = next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))
            queue_arguments = " ".join(rest[:stop])
            position += 1 + stop
        elif argument in ("-terse", "-verbose", "-unused", "-disable", "-debug", "-spool"):
            terse = terse or argument == "-terse"
            position += 1
        elif argument == "-":
            description_file = "-"
            position += 1
        elif "=" in argument and not argument.startswith("-"):
            key, value = argument.split("=", 1)
            commands[key.strip() if key.startswith(("+", "MY.")) else key.strip().lower()] = value
            position += 1
        elif argument.startswith("-"):
            fail(f"Unrecognized argument {argument}", 1)
        else:
            description_file = argument
            position += 1
    try:
        if description_file == "-" or (description_file is None and queue_arguments is None):
            text = sys.stdin.read()
        elif description_file is not None:
            text = Path(description_file).read_text()
        else:
            text = ""
        found = parse_description(description_lines(text) + appended, commands)
        queue_arguments = queue_arguments if queue_arguments is not None else found
        if queue_arguments is None:
            raise SubmitError("ERROR: Submit file has no queue statement")
        if queue_arguments.strip() not in ("", "1"):
            raise SubmitError("ERROR: this emulator queues one job per submission")
        if emulator.server_down:
            raise SubmitError(
                "\nERROR: Failed to connect to local queue manager\n"
                + schedd_unreachable(emulator.config)
            )
        emulator.wait_while_stalled()
        job = submit(commands, batch_name)
    except SubmitError as error:
        fail(str(error), 1)
    if terse:
        print(f"{job.sequence}.0 - {job.sequence}.0")
    else:
        print(f"Submitting job(s).\n1 job(s) submitted to cluster {job.sequence}.")
    return 0


def submit(commands: dict[str, str], batch_name: str) -> Job:
    if "executable" not in commands:
        raise SubmitError("\nERROR: No 'executable' parameter was provided")
    if commands.get("getenv", "false").lower() in ("true", "1"):
        raise SubmitError("ERROR: this emulator does not copy the submitter's environment")
    iwd = os.path.abspath(commands.get("initialdir", os.getcwd()))
    executable = os.path.join(iwd, commands["executable"])
    if not os.path.exists(executable):
        raise SubmitError(f"\nERROR: Executable file {executable} does not exist")
    group = commands.get("accounting_group", "")
    known_groups = settings().get("accounting_groups")
    if group and known_groups is not None and group not in known_groups:
        raise SubmitError(
            "\nERROR: Failed to commit job submission into the queue.\n"
            "ERROR: Submit requirement KnownAccountingGroup evaluated to false. "
            f"Unknown accounting group {group}"
        )
    cpus = int(commands.get("request_cpus", "1"))
    resources: dict[str, Any] = {"ncpus": cpus}
    if "request_memory" in commands:
        resources["memory_mb"] = memory_mb(commands["request_memory"])
    if "request_gpus" in commands:
        resources["gpus"] = int(commands["request_gpus"])
    if walltime := WALLTIME.search(commands.get("periodic_remove", "")):
        resources["walltime_seconds"] = int(walltime[1])
    # The cluster id is the job's sequence number, known once it is queued: paths keep the
    # macro as the core's {sequence} placeholder.
    placeholder = 1 << 40

    def path(name: str) -> str | None:
        value = commands.get(name)
        if not value:
            return None
        expanded = expand(value, commands, placeholder).replace("{", "{{").replace("}", "}}")
        return os.path.join(iwd, expanded.replace(str(placeholder), "{sequence}"))

    custom = {
        key.removeprefix("+").removeprefix("MY.").removeprefix("my."): classad_literal(value)
        for key, value in commands.items()
        if key.startswith(("+", "MY.", "my."))
    }
    job_environment = split_environment(commands.get("environment", ""))
    job_environment.update(
        {
            "_CONDOR_JOB_IWD": iwd,
            "_CONDOR_SLOT": "slot1_1",
            "BATCH_SYSTEM": "HTCondor",
            "OMP_NUM_THREADS": str(cpus),
        }
    )
    argv = [executable, *split_arguments(commands.get("arguments", ""))]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(job_environment.items()))
    # The starter gives the job exactly the submit description's environment plus its own
    # variables, and a scratch directory of its own.
    wrapper = (
        f"scratch=$(mktemp -d /tmp/condor_scratch.XXXXXX)\n"
        f"cd {shlex.quote(iwd)} || exit 1\n"
        f'exec /usr/bin/env -i _CONDOR_SCRATCH_DIR="$scratch" TMPDIR="$scratch" '
        f"{assignments} {shlex.join(argv)}\n"
    )
    ad = {
        "Cmd": executable,
        "Iwd": iwd,
        "Args": " ".join(argv[1:]),
        "RequestCpus": cpus,
        "RequestMemory": resources.get("memory_mb"),
        "RequestGpus": resources.get("gpus"),
        "AcctGroup": group or None,
        "PeriodicRemove": commands.get("periodic_remove"),
        "JobUniverse": 5,
        **custom,
    }
    return emulator.submit(
        wrapper,
        current_user(),
        batch_name or commands.get("batch_name", ""),
        resources,
        "",
        path("output") or "/dev/null",
        {"ad": {k: v for k, v in ad.items() if v is not None}},
        error_path=path("error") or "/dev/null",
    )


# -- job ads -------------------------------------------------------------------------------------


def job_status(job: Job) -> int:
    if job.state == QUEUED:
        return 1
    if job.state in (EXITING, COMPLETED) and (job.cancelled_by or job.walltime_exceeded):
        return 3
    if job.state in (EXITING, COMPLETED):
        return 4
    return 2


def job_ad(job: Job) -> dict[str, Any]:
    config = emulator.config
    status = job_status(job)
    ad: dict[str, Any] = {
        **job.extra.get("ad", {}),
        "ClusterId": job.sequence,
        "ProcId": 0,
        "GlobalJobId": f"{config.server}#{job.sequence}.0#{int(job.submit_time)}",
        "JobStatus": status,
        "Owner": job.owner,
        "User": f"{job.owner}@{config.server}",
        "QDate": int(job.submit_time),
        "Out": job.output_path,
        "Err": job.error_path,
        "EnteredCurrentStatus": int(job.end_time or job.start_time or job.submit_time),
    }
    if job.name:
        ad["JobBatchName"] = job.name
    slot = f"slot1_1@{job.exec_host}" if job.exec_host else ""
    if job.start_time:
        ad["JobCurrentStartDate"] = int(job.start_time)
    if status == 1 and job.reason:
        ad["LastRejMatchReason"] = job.reason
    if status == 2:
        ad["RemoteHost"] = slot
    if status in (3, 4):
        ad["LastRemoteHost"] = slot
        ad["CompletionDate"] = int(job.end_time or 0)
    if status == 3:
        if job.walltime_exceeded:
            ad["RemoveReason"] = (
                f"The job attribute PeriodicRemove expression '{ad.get('PeriodicRemove')}' "
                "evaluated to TRUE"
            )
        else:
            ad["RemoveReason"] = f"via condor_rm (by user {job.cancelled_by})"
    if status == 4:
        ad["ExitBySignal"] = job.signal is not None
        if job.signal is not None:
            ad["ExitSignal"] = job.signal
        else:
            ad["ExitCode"] = job.exit_code
    return ad


def matches(ad: dict[str, Any], constraint: str) -> bool:
    if member := LIST_MEMBER.match(constraint):
        value = ad.get(member[1])
        return value is not None and str(value) in member[2].split(",")
    if equal := EQUALS.match(constraint):
        return str(ad.get(equal[1])) == equal[3]
    fail(f"Error: the emulator cannot evaluate the constraint {constraint!r}", 1)


def condor_json(ads: list[dict[str, Any]]) -> str:
    """[ / one object per ad, attributes sorted, two-space indent / ',' between / ]"""
    if not ads:
        return ""
    objects = []
    for ad in ads:
        body = ",\n".join(
            f"  {json.dumps(key)}: {json.dumps(ad[key])}" for key in sorted(ad, key=str.lower)
        )
        objects.append("{\n" + body + "\n}")
    return "[\n" + "\n,\n".join(objects) + "\n]\n"


def autoformat(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_options(arguments: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    selectors: list[str] = []
    position = 0
    while position < len(arguments):
        argument = arguments[position]
        if argument in ("-attributes", "-constraint", "-limit", "-name", "-pool"):
            options[argument] = arguments[position + 1]
            position += 2
        elif argument in ("-af", "-autoformat"):
            options["-af"] = " ".join(arguments[position + 1 :])
            break
        elif argument.startswith("-"):
            options[argument] = ""
            position += 1
        else:
            selectors.append(argument)
            position += 1
    return options, selectors


def selected(ads: list[dict[str, Any]], options: dict[str, str], selectors: list[str]) -> list:
    chosen = []
    for ad in ads:
        if selectors and not any(
            selector in (str(ad["ClusterId"]), f"{ad['ClusterId']}.{ad['ProcId']}", ad["Owner"])
            for selector in selectors
        ):
            continue
        if "-constraint" in options and not matches(ad, options["-constraint"]):
            continue
        chosen.append(ad)
    return chosen


def show(ads: list[dict[str, Any]], options: dict[str, str]) -> None:
    if "-attributes" in options:
        wanted = {name.lower() for name in options["-attributes"].split(",")}
        ads = [{k: v for k, v in ad.items() if k.lower() in wanted} for ad in ads]
    if "-json" in options:
        sys.stdout.write(condor_json(ads))
    elif "-af" in options:
        for ad in ads:
            print(" ".join(autoformat(ad.get(name)) for name in options["-af"].split()))
    elif "-long" in options or "-l" in options:
        for ad in ads:
            for key in sorted(ad, key=str.lower):
                print(f"{key} = {json.dumps(ad[key])}")
            print()
    else:
        for ad in ads:
            state = " IRXCH>S"[ad["JobStatus"]]
            print(f"{ad['ClusterId']}.{ad['ProcId']:<6} {ad['Owner']:<10} {state}  {ad['Cmd']}")


def condor_q(arguments: list[str]) -> int:
    options, selectors = query_options(arguments)
    config = emulator.config
    if emulator.server_down:
        fail(f"\n-- Failed to fetch ads from: {SCHEDD_ADDRESS.format(server=config.server)} : "
             f"{config.server}\n{schedd_unreachable(config)}", 1)  # fmt: skip
    emulator.wait_while_stalled()
    # A job leaves the queue when it ends; only the history remembers it then.
    ads = [job_ad(job) for job in emulator.jobs() if job.state != COMPLETED]
    if "-allusers" not in options and not selectors:
        ads = [ad for ad in ads if ad["Owner"] == current_user()]
    show(selected(ads, options, selectors), options)
    return 0


def condor_history(arguments: list[str]) -> int:
    # The history file is read where the tool runs: no schedd needed.
    options, selectors = query_options(arguments)
    ads = [job_ad(job) for job in reversed(emulator.jobs()) if job.state == COMPLETED]
    chosen = selected(ads, options, selectors)
    if "-limit" in options:
        chosen = chosen[: int(options["-limit"])]
    show(chosen, options)
    return 0


def condor_rm(arguments: list[str]) -> int:
    config = emulator.config
    if emulator.server_down:
        fail(f"\nERROR: Failed to connect to local queue manager\n{schedd_unreachable(config)}", 1)
    emulator.wait_while_stalled()
    status = 0
    for selector in arguments:
        cluster = selector.split(".")[0]
        try:
            emulator.cancel(selector, current_user())
        except (UnknownJob, AlreadyFinished, NotOwner):
            message = (
                f"Job {selector} not found"
                if "." in selector
                else f"Couldn't find/remove all jobs in cluster {cluster}"
            )
            sys.stderr.write(message + "\n")
            status = 1
            continue
        if "." in selector:
            print(f"Job {selector} marked for removal")
        else:
            print(f"All jobs in cluster {cluster} have been marked for removal")
    return status


def condor_version(arguments: list[str]) -> int:
    print(f"$CondorVersion: {VERSION} 2024-02-08 BuildID: 712251 PackageID: {VERSION}-1 $")
    print("$CondorPlatform: X86_64-Debian_12 $")
    return 0
