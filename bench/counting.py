"""Counting scheduler commands the same way for both sides: wrapper scripts that log one line per
call (time, tool, number of arguments, length of the arguments, and how it selects jobs: by
name, by id or all) and then exec the real tool."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo")

WRAPPER = """#!/bin/bash
# Written by bench/counting.py: log this call, then run the real {tool}.
case " $* " in
*" --name="* | *" -n "*) selects=name ;;
*" -j "* | *" --jobs="* | *" --jobs "*) selects=ids ;;
*) selects=all ;;
esac
args="$*"
printf '%s {tool} %d %d %s\\n' "$EPOCHREALTIME" "$#" "${{#args}}" "$selects" >> {log}
exec {real} "$@"
"""


@dataclass(frozen=True)
class Call:
    time: float
    tool: str
    argc: int
    argv_chars: int
    selects: str  # name, ids or all


def install_wrappers(directory: Path) -> Path:
    """Wrappers for every Slurm tool in `directory`; returns their log (world-writable: the jobs'
    users submit and cancel through them too)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    log = directory / "calls.log"
    log.touch()
    log.chmod(0o666)
    for tool in TOOLS:
        real = shutil.which(tool, path="/usr/bin:/usr/local/bin")
        if real is None:
            raise RuntimeError(f"{tool} is not installed (dev/slurm.sh install)")
        wrapper = directory / tool
        wrapper.write_text(WRAPPER.format(tool=tool, log=log, real=real))
        wrapper.chmod(0o755)
    return log


def read_calls(log: Path, since: float = 0.0, until: float = float("inf")) -> list[Call]:
    calls = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) != 5:
            continue
        call = Call(float(fields[0]), fields[1], int(fields[2]), int(fields[3]), fields[4])
        if since <= call.time < until:
            calls.append(call)
    return calls


def by_tool(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.tool] = counts.get(call.tool, 0) + 1
    return dict(sorted(counts.items()))
