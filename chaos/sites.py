"""The campaign's sites, as BatchCluster specs: the system Slurm reached three ways (locally,
over SSH, through slurmrestd) and the PBS Pro dialect emulator (tests/emulators) in a spool of
its own, whose "server down" switch is the emulator's fault. What the campaign needs to see and
cancel jobs on the emulator without going through the operator is here too."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.stack import JOB_PYTHON, REPO, STAND_IN, run

from .invariants import Job

PARTITION = "bench"  # oversubscribed (dev/slurm.sh): dozens of stand-in servers fit
SLURMRESTD_PORT = 6820  # dev/slurm.sh
JWT_KEY = Path("/var/spool/slurm/jwt_hs256.key")
EMULATOR = "pbspro"
EMULATOR_BIN = REPO / "tests" / "emulators" / EMULATOR / "bin"
EMULATOR_ROOT = Path("/var/spool/bnb-emulators-chaos")
EMULATOR_SPOOL = EMULATOR_ROOT / EMULATOR
# The emulator's states, as the invariants name Slurm's.
EMULATOR_STATES = {
    "queued": "PENDING",
    "running": "RUNNING",
    "exiting": "COMPLETING",
    "completed": "COMPLETED",
}


def cluster_spec(
    scheduler: str, partition: str, operator_port: int, poll_interval: int, connection: dict
) -> dict:
    return {
        "scheduler": scheduler,
        "callbackURL": f"http://127.0.0.1:{operator_port}",
        "allowInsecureCallback": True,  # the report never leaves this machine
        "execHosts": {"allowLoopback": True},  # the jobs run on this machine
        "pollIntervalSeconds": poll_interval,
        "python": JOB_PYTHON,
        "jupyterCommand": [JOB_PYTHON, "-c", STAND_IN],
        "connection": connection,
        "profiles": [
            {
                "name": "chaos",
                "displayName": "Chaos",
                "description": "1 CPU shared",
                "defaults": {"cpus": 1, "memory": "8M", "walltime": "01:00:00"}
                | {"partition": partition},
                "limits": {"maxCpus": 1, "maxMemory": "64M", "maxWalltime": "02:00:00"}
                | {"partitions": [partition], "accounts": ["research"]},
            }
        ],
    }


def emulator_connection() -> dict:
    # sudo resets the environment: the spool goes through env(1), after the user switch.
    spool = f"BNB_EMULATOR_SPOOL={EMULATOR_ROOT}"
    return {
        "type": "local",
        "commandTimeoutSeconds": 15,
        "binDirectory": str(EMULATOR_BIN),
        "runAsCommand": ["sudo", "-n", "-u", "{user}", "--", "/usr/bin/env", spool],
        "environment": {"BNB_EMULATOR_SPOOL": str(EMULATOR_ROOT)},
    }


def install_emulator() -> None:
    """A fresh spool: jobs an interrupted campaign left would count as orphans."""
    run(REPO / "dev/emulators.sh", "install", EMULATOR_ROOT)
    for record in (EMULATOR_SPOOL / "jobs").glob("*.json"):
        record.unlink()
    emulator_down(False)


def emulator_jobs() -> tuple[Job, ...]:
    """Every job the emulator's spool records (the spool is the campaign's alone)."""
    jobs = []
    for record in sorted((EMULATOR_SPOOL / "jobs").glob("*.json")):
        try:
            job = json.loads(record.read_text())
        except (OSError, ValueError):  # being written right now: the next reading has it
            continue
        state = EMULATOR_STATES.get(job["state"], job["state"].upper())
        jobs.append(Job(job["job_id"], job["name"], job["owner"], state))
    return tuple(jobs)


def emulator_cancel(job_id: str) -> bool:
    """qdel as root, as an admin would; whether the emulator took it."""
    env = {**os.environ, "BNB_EMULATOR_SPOOL": str(EMULATOR_ROOT)}
    return run(EMULATOR_BIN / "qdel", job_id, check=False, env=env).returncode == 0


def emulator_down(down: bool) -> None:
    """The emulator's server down (its commands print the dialect's "cannot connect") or up."""
    flag = EMULATOR_SPOOL / "server-down"
    if down:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


def emulator_up() -> bool:
    return not (EMULATOR_SPOOL / "server-down").exists()
