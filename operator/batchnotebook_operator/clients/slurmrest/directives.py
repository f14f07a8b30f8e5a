"""A rendered job script's `#SBATCH` directives as slurmrestd job properties.

slurmrestd ignores `#SBATCH` lines in the script it is given: the job's options must travel as
JSON properties. They are read from the rendered script's own directives (the same script the
command-line path gives sbatch). v0.0.38 takes the values verbatim, because slurmrestd 22.05
parses each with the same code (slurm_opt.c) that parses sbatch's options; v0.0.40 and later
want them typed, converted here as sbatch would (minutes, megabytes, TRES strings).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from typing import Any

from batchnotebook_api.errors import InvalidOptions

Convert = Callable[[str], Any]
# sbatch's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
MEMORY = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)
MEGABYTES_PER_UNIT = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def verbatim(value: str) -> str:
    return value


def integer(value: str) -> int:
    if not value.isdigit():
        raise InvalidOptions(f"{value!r} is not a whole number")
    return int(value)


def minutes(value: str) -> int | dict[str, bool]:
    """sbatch --time in minutes, seconds rounded up as Slurm does; UNLIMITED as infinite."""
    if value.upper() in ("UNLIMITED", "INFINITE", "-1"):
        return {"set": True, "infinite": True}
    found = TIME.match(value)
    if not found:
        raise InvalidOptions(f"time {value!r} is not one of M, M:S, H:M:S, D-H, D-H:M, D-H:M:S")
    days, first, second, third = found.groups()
    if days is not None:  # D-H[:M[:S]]
        hours, mins, secs = int(first), int(second or 0), int(third or 0)
    elif third is not None:  # H:M:S
        hours, mins, secs = int(first), int(second), int(third)
    else:  # M[:S]
        hours, mins, secs = 0, int(first), int(second or 0)
    total = int(days or 0) * 1440 + hours * 60 + mins
    return total + math.ceil(secs / 60)


def megabytes(value: str) -> int:
    """sbatch --mem in megabytes (no suffix: megabytes)."""
    found = MEMORY.match(value)
    if not found:
        raise InvalidOptions(f"memory {value!r} is not a number with an optional K, M, G or T")
    return math.ceil(int(found[1]) * MEGABYTES_PER_UNIT[found[2].upper()])


def prefixed(prefix: str) -> Convert:
    return lambda value: f"{prefix}{value}"


def gres(value: str) -> str:
    """--gres=gpu:2 → the TRES string gres/gpu:2, as sbatch sends it."""
    return ",".join(
        part if part.startswith("gres/") else f"gres/{part}" for part in value.split(",")
    )


def flags(value: str) -> list[str]:
    return [flag.strip().upper() for flag in value.split(",") if flag.strip()]


# sbatch option → (v0.0.38 property, v0.0.40+ property, how v0.0.40+ wants the value). Only
# options slurmrestd was seen to apply as sbatch does are here; any other directive is refused
# rather than dropped. v0.0.38 takes sbatch's own strings (slurm_opt.c parses them); from v0.0.40
# on the values are typed. Left out on purpose: --signal (22.05 refuses B:USR1@60).
OPTIONS: dict[str, tuple[str, str, Convert]] = {
    "account": ("account", "account", verbatim),
    "chdir": ("current_working_directory", "current_working_directory", verbatim),
    "comment": ("comment", "comment", verbatim),
    "constraint": ("constraints", "constraints", verbatim),
    "cpus-per-gpu": ("cpus_per_gpu", "cpus_per_tres", prefixed("gres/gpu:")),
    "cpus-per-task": ("cpus_per_task", "cpus_per_task", integer),
    "dependency": ("dependency", "dependency", verbatim),
    "error": ("standard_error", "standard_error", verbatim),
    "gpus": ("gpus", "tres_per_job", prefixed("gres/gpu:")),
    "gpus-per-node": ("gpus_per_node", "tres_per_node", prefixed("gres/gpu:")),
    "gpus-per-task": ("gpus_per_task", "tres_per_task", prefixed("gres/gpu:")),
    "gres": ("gres", "tres_per_node", gres),
    "input": ("standard_input", "standard_input", verbatim),
    "job-name": ("name", "name", verbatim),
    "licenses": ("licenses", "licenses", verbatim),
    "mail-type": ("mail_type", "mail_type", flags),
    "mail-user": ("mail_user", "mail_user", verbatim),
    "mem": ("memory_per_node", "memory_per_node", megabytes),
    "mem-per-cpu": ("memory_per_cpu", "memory_per_cpu", megabytes),
    "nice": ("nice", "nice", integer),
    "nodes": ("nodes", "nodes", verbatim),
    "ntasks": ("tasks", "tasks", integer),
    "ntasks-per-node": ("tasks_per_node", "tasks_per_node", integer),
    "open-mode": ("open_mode", "open_mode", flags),
    "output": ("standard_output", "standard_output", verbatim),
    "partition": ("partition", "partition", verbatim),
    "qos": ("qos", "qos", verbatim),
    "reservation": ("reservation", "reservation", verbatim),
    "time": ("time_limit", "time_limit", minutes),
    "time-min": ("time_minimum", "time_minimum", minutes),
    "wckey": ("wckey", "wckey", verbatim),
}
# Flags: (v0.0.38 property and value, v0.0.40+ property and value); None: not passed.
FLAGS: dict[str, tuple[tuple[str, Any] | None, tuple[str, Any] | None]] = {
    "hold": (("hold", True), ("hold", True)),
    # slurmrestd 22.05 keeps the job requeueable whatever it is told; the launcher refuses to
    # run a job a second time, so the default template works there too.
    "no-requeue": (None, ("requeue", False)),
}
SHORT_OPTIONS = {
    "A": "account",
    "C": "constraint",
    "c": "cpus-per-task",
    "D": "chdir",
    "d": "dependency",
    "e": "error",
    "G": "gpus",
    "H": "hold",
    "i": "input",
    "J": "job-name",
    "L": "licenses",
    "n": "ntasks",
    "o": "output",
    "p": "partition",
    "q": "qos",
    "t": "time",
}


def script_directives(script: str) -> list[str]:
    """The arguments of the script's `#SBATCH` lines, read as sbatch reads them: up to the first
    line that is neither blank nor a comment."""
    arguments: list[str] = []
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            arguments += shlex.split(line.removeprefix("#SBATCH"), comments=True)
        elif line.startswith(("#PBS", "#BSUB")):
            raise InvalidOptions(
                f"the job script has {line.split()[0]} directives, which sbatch translates but "
                "slurmrestd does not: use #SBATCH"
            )
        elif line.strip() and not line.lstrip().startswith("#"):
            break
    return arguments


def job_properties(arguments: list[str], *, typed: bool = False) -> dict[str, Any]:
    """sbatch options → slurmrestd job properties: sbatch's strings for v0.0.38, typed values
    for v0.0.40 and later (`typed`)."""
    properties: dict[str, Any] = {}
    remaining = list(arguments)
    while remaining:
        argument = remaining.pop(0)
        value: str | None = None
        if argument.startswith("--"):
            name, has_value, inline = argument[2:].partition("=")
            value = inline if has_value else None
        elif argument.startswith("-") and len(argument) > 1 and argument[1] in SHORT_OPTIONS:
            name = SHORT_OPTIONS[argument[1]]
            value = argument[2:] or None
        else:
            raise InvalidOptions(f"#SBATCH {argument}: not an option")
        if name in FLAGS:
            if value is not None:
                raise InvalidOptions(f"#SBATCH --{name} takes no value")
            flag = FLAGS[name][typed]
            if flag is not None:
                properties[flag[0]] = flag[1]
            continue
        if name not in OPTIONS:
            raise InvalidOptions(
                f"#SBATCH --{name} is not passed to slurmrestd by this operator; the options it "
                f"passes: {', '.join(sorted([*OPTIONS, *FLAGS]))}"
            )
        if value is None:
            if not remaining:
                raise InvalidOptions(f"#SBATCH --{name} needs a value")
            value = remaining.pop(0)
        legacy, current, convert = OPTIONS[name]
        try:
            properties[current if typed else legacy] = convert(value) if typed else value
        except InvalidOptions as error:
            raise InvalidOptions(f"#SBATCH --{name}={value}: {error}") from error
    return properties
