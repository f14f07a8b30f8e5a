"""CPU time and memory of processes, from /proc."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    own: float  # seconds the process itself ran
    children: float  # seconds its waited-for children ran (e.g. the scheduler commands)


def cpu_times(pid: int) -> CpuTimes:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime..cstime are fields 14..17 (1-based).
    utime, stime, cutime, cstime = (int(f) / CLOCK_TICKS for f in fields[11:15])
    return CpuTimes(own=utime + stime, children=cutime + cstime)


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, summed over its CPUs."""
    with open("/proc/stat") as stat:
        # user nice system idle iowait irq softirq steal (guest time is already in user's)
        ticks = [int(f) for f in stat.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that map them, so summing
    it over many jobs' processes does not count the shared Python libraries many times."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def job_pss_kib(job_id: str) -> int | None:
    """The summed PSS of a Slurm job's processes on this node (scontrol listpids), the job's
    slurmstepd included; None if the job has no processes here."""
    out = subprocess.run(
        ["scontrol", "listpids", job_id], capture_output=True, text=True, check=False
    ).stdout
    pids = {int(line.split()[0]) for line in out.splitlines()[1:] if line.split()[:1] != ["-1"]}
    stepds = subprocess.run(
        ["pgrep", "-f", f"^slurmstepd: \\[{job_id}\\."], capture_output=True, text=True
    ).stdout.split()
    pids |= {int(pid) for pid in stepds}
    return sum(pss_kib(pid) for pid in pids) if pids else None
