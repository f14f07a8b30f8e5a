"""What both sides share: settings, percentiles, the scheduler's own start latency (sacct), and
the jobs' memory."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.stack import REPO

from .procstat import job_pss_kib

PARTITION = "bench"
BENCH_USER = "alice"
PARTITION_CPUS = 4  # MaxCPUsPerNode of the bench partition (dev/slurm.sh)


@dataclass
class Settings:
    state: Path = REPO / ".bench"
    api_port: int = 26900
    operator_port: int = 26080
    ours_hub_port: int = 26000
    batchspawner_hub_port: int = 26500
    poll_interval: int = 10  # our BatchCluster's pollIntervalSeconds (the CRD's default)
    steady_seconds: float = 60.0
    cancel_sample: int = 20
    max_running: int = 1024
    parallel_requests: int = 32
    # The operator's interpreter: `make bench` gives .venv-operator's (the image's dependencies
    # only, bench/setup-operator-venv.sh); the smoke test runs it from the suite's venv.
    operator_python: Path = Path(sys.executable)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def accounting_times(job_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Slurm's own submit and start time (epoch seconds, whole seconds as sacct gives them) of
    each job that started."""
    found: dict[str, tuple[float, float]] = {}
    for chunk in range(0, len(job_ids), 200):
        out = subprocess.run(
            [
                "/usr/bin/sacct",
                "--allusers",
                "--noheader",
                "--parsable2",
                "--allocations",
                f"--jobs={','.join(job_ids[chunk : chunk + 200])}",
                "--format=JobID,Submit,Start",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            job_id, submit, start = line.split("|")
            if start in ("", "Unknown", "None"):
                continue
            # sacct prints the controller's local time, as this process reads it.
            found[job_id] = (
                dt.datetime.fromisoformat(submit).timestamp(),
                dt.datetime.fromisoformat(start).timestamp(),
            )
    return found


def wait_for_accounting(job_ids: list[str], timeout: float = 30) -> dict[str, tuple[float, float]]:
    """sacct shows a job's start a few seconds after slurmctld knows it."""
    deadline = time.monotonic() + timeout
    while True:
        found = accounting_times(job_ids)
        if len(found) == len(job_ids) or time.monotonic() > deadline:
            return found
        time.sleep(2)


def jobs_memory_kib(job_ids: list[str], sample: int = 10) -> float | None:
    """The mean PSS of a few running jobs (slurmstepd, job script, server and their helpers)."""
    sizes = [size for job_id in job_ids[:sample] if (size := job_pss_kib(job_id))]
    return sum(sizes) / len(sizes) if sizes else None


def set_running_cap(max_running: int) -> None:
    """At most `max_running` bench jobs run at once (the rest wait, Resources): each of the
    partition's CPUs is shared by that many jobs / CPUs.  Changed live; slurm.conf's value comes
    back with the next reconfigure."""
    share = max(1, math.ceil(max_running / PARTITION_CPUS))
    subprocess.run(
        ["scontrol", "update", f"PartitionName={PARTITION}", f"OverSubscribe=FORCE:{share}"],
        check=True,
    )


def memory_available_kib() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def load_average() -> float:
    return os.getloadavg()[0]


class ControllerWatch(threading.Thread):
    """Asks slurmctld once a second whether it is up: other suites on this machine stop and
    start it (tests/integration/test_faults.py), and a run measured while it was down says so."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.down_seconds = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(1):
            answer = subprocess.run(
                ["/usr/bin/scontrol", "ping"], capture_output=True, text=True, check=False
            )
            if "is UP" not in answer.stdout:
                self.down_seconds += 1

    def stop(self) -> int:
        self.stopping.set()
        return self.down_seconds
