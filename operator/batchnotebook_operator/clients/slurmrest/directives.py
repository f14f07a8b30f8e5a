"""A rendered job script's `#SBATCH` directives as slurmrestd job properties.

slurmrestd 22.05 ignores `#SBATCH` lines in the script it is given: the job's options must travel
as JSON properties. They are read from the rendered script's own directives (the same script the
command-line path gives sbatch) and passed verbatim, because slurmrestd parses each value with
the same code (slurm_opt.c) that parses sbatch's options.
"""

from __future__ import annotations

import shlex
from typing import Any

from batchnotebook_api.errors import InvalidOptions

# sbatch option → v0.0.38 job property. Only options that slurmrestd 22.05 was seen to apply as
# sbatch does are here; any other directive is refused rather than dropped. Left out on purpose:
# --no-requeue (slurmrestd keeps the job requeueable) and --signal (it refuses B:USR1@60).
OPTION_PROPERTIES = {
    "account": "account",
    "chdir": "current_working_directory",
    "comment": "comment",
    "constraint": "constraints",
    "cpus-per-gpu": "cpus_per_gpu",
    "cpus-per-task": "cpus_per_task",
    "dependency": "dependency",
    "error": "standard_error",
    "get-user-env": "get_user_environment",
    "gpus": "gpus",
    "gpus-per-node": "gpus_per_node",
    "gpus-per-task": "gpus_per_task",
    "gres": "gres",
    "input": "standard_input",
    "job-name": "name",
    "licenses": "licenses",
    "mail-type": "mail_type",
    "mail-user": "mail_user",
    "mem": "memory_per_node",
    "mem-per-cpu": "memory_per_cpu",
    "mem-per-gpu": "memory_per_gpu",
    "nice": "nice",
    "ntasks": "tasks",
    "ntasks-per-node": "tasks_per_node",
    "open-mode": "open_mode",
    "output": "standard_output",
    "partition": "partition",
    "qos": "qos",
    "reservation": "reservation",
    "time": "time_limit",
    "time-min": "time_minimum",
    "wckey": "wckey",
}
FLAG_PROPERTIES = {"hold": ("hold", True)}
# Flags slurmrestd 22.05 does not apply, whose purpose is kept another way, so that the default
# template works here too: --no-requeue (the job stays requeueable, but the launcher refuses to
# run a job a second time).
KEPT_OTHERWISE = frozenset({"no-requeue"})
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


def job_properties(arguments: list[str]) -> dict[str, Any]:
    """sbatch options → slurmrestd v0.0.38 job properties, values left for Slurm to parse."""
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
        if name in KEPT_OTHERWISE and value is None:
            continue
        if name in FLAG_PROPERTIES:
            if value is not None:
                raise InvalidOptions(f"#SBATCH --{name} takes no value")
            key, flag = FLAG_PROPERTIES[name]
            properties[key] = flag
            continue
        if name not in OPTION_PROPERTIES:
            raise InvalidOptions(
                f"#SBATCH --{name} is not passed to slurmrestd by this operator; the options it "
                f"passes: {', '.join(sorted([*OPTION_PROPERTIES, *FLAG_PROPERTIES]))}"
            )
        if value is None:
            if not remaining:
                raise InvalidOptions(f"#SBATCH --{name} needs a value")
            value = remaining.pop(0)
        properties[OPTION_PROPERTIES[name]] = value
    return properties
