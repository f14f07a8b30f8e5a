"""`python -m bench.run --n 10 100 1000`: the whole benchmark, both sides, then the report.

Starts its own API server (.bench/, port 26900), operator, hubs and proxies, and stops them all;
jobs run in Slurm's `bench` partition as alice.  Raw measurements go to bench/results/raw.json,
the tables and plots to bench/results/ (bench/report.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from devstack import controlplane
from devstack.controlplane import ControlPlane
from tests.integration.stack import REPO, kubectl
from tests.integration.stack import run as run_command

from . import hubs, ours, report
from .common import (
    PARTITION,
    ControllerWatch,
    Settings,
    load_average,
    memory_available_kib,
    set_running_cap,
)

SIDES = ("ours", "ours-hub", "batchspawner")
# The hubs spawn at most this many servers at once (the simultaneous-spawns check).
HUB_MAX_N = 300
BATCHSPAWNER_MAX_N = 100


def start_control_plane(settings: Settings) -> Path:
    directory = settings.state / "controlplane"
    # A fresh etcd: objects an interrupted run left would be followed by the next operator.
    controlplane.stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    kubeconfig = ControlPlane(directory, settings.api_port).start()
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", REPO / "crds")
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return kubeconfig


def stop_control_plane(settings: Settings) -> None:
    controlplane.stop(settings.state / "controlplane")


def ensure_partition() -> None:
    """The bench partition is in dev/slurm.sh's slurm.conf; a running slurmctld learns it from
    `scontrol reconfigure` (never a restart: other suites use Slurm at the same time)."""
    run_command(REPO / "dev/slurm.sh", "install")
    run_command(REPO / "dev/slurm.sh", "start")
    if not run_command("sinfo", "-h", "-p", PARTITION, "-o", "%P").stdout.strip():
        run_command("scontrol", "reconfigure")


def remove_job_logs() -> None:
    for path in glob.glob("/tmp/bnb-bench-*.log"):
        os.unlink(path)


def machine(settings: Settings) -> dict:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_available_kib": memory_available_kib(),
        "load_average_at_start": load_average(),
        "python": platform.python_version(),
        "operator_python": os.path.relpath(settings.operator_python, REPO),
        "slurm": run_command("sinfo", "--version").stdout.strip(),
        "commit": run_command("git", "rev-parse", "--short", "HEAD", cwd=REPO).stdout.strip(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--sides", nargs="+", default=list(SIDES), choices=list(SIDES), help="what to run"
    )
    parser.add_argument(
        "--hub-n",
        type=int,
        nargs="+",
        help="N for the two hubs (default: --n, at most HUB_MAX_N; and HUB_MAX_N itself for "
        "ours-hub if a larger N was asked: the simultaneous-spawns check)",
    )
    parser.add_argument("--steady-seconds", type=float, default=Settings.steady_seconds)
    parser.add_argument(
        "--poll-interval", type=int, default=Settings.poll_interval, help="our pollIntervalSeconds"
    )
    parser.add_argument(
        "--max-running",
        type=int,
        default=0,
        help="jobs that may run at once (the rest wait in the queue); 0: as many as half the "
        "available memory holds, measured from the first run's jobs",
    )
    parser.add_argument(
        "--batchspawner-max-n",
        type=int,
        default=BATCHSPAWNER_MAX_N,
        help="largest N for batchspawner: each of its jobs (srun + batchspawner-singleuser, "
        "which imports JupyterHub) is ~4x ours, so more do not all run in half this machine's "
        "memory, and each server left pending asks squeue twice a second",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep OUT/raw.json's runs, replacing those of the same side and N",
    )
    parser.add_argument(
        "--operator-python",
        type=Path,
        default=Settings.operator_python,
        help="the operator's interpreter (make bench: .venv-operator's, the image's dependencies)",
    )
    parser.add_argument("--state", type=Path, default=Settings.state)
    parser.add_argument("--api-port", type=int, default=Settings.api_port)
    parser.add_argument("--operator-port", type=int, default=Settings.operator_port)
    args = parser.parse_args(argv)
    settings = Settings(
        state=args.state.resolve(),
        api_port=args.api_port,
        operator_port=args.operator_port,
        steady_seconds=args.steady_seconds,
        poll_interval=args.poll_interval,
        operator_python=args.operator_python.absolute(),
    )
    settings.state.mkdir(parents=True, exist_ok=True)
    settings.state.chmod(0o755)  # the jobs' user reaches the wrappers in it
    ensure_partition()
    command = " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])])
    results: dict = {
        "machine": machine(settings),
        "command": command,
        "batchspawner_max_n": args.batchspawner_max_n,
        "runs": [],
    }
    if args.append and (args.out / "raw.json").exists():
        kept = json.loads((args.out / "raw.json").read_text())
        asked = set(plan(args))
        results["runs"] = [r for r in kept["runs"] if (r["side"], r["n"]) not in asked]
        results["earlier"] = kept["machine"]
    kubeconfig = start_control_plane(settings)
    try:
        for side, n in plan(args):
            cap = args.max_running or running_cap(results["runs"], side)
            settings.max_running = cap
            set_running_cap(cap)
            print(f"bench: {side}, N={n} (at most {cap} running)", file=sys.stderr, flush=True)
            controller = ControllerWatch()
            controller.start()
            if side == "ours":
                measured = ours.run(kubeconfig, settings, n)
            elif side == "ours-hub":
                measured = hubs.run_ours(kubeconfig, settings, n)
            else:
                measured = hubs.run_batchspawner(settings, n)
            measured["slurmctld_down_seconds"] = controller.stop()
            measured["max_running"] = cap
            measured["load_average_after"] = load_average()
            results["runs"].append(measured)
            save(args.out, results)
    finally:
        stop_control_plane(settings)
        set_running_cap(Settings.max_running)
        remove_job_logs()
    report.write(results, args.out)


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Smallest N first (its jobs' measured size caps the larger runs), each side in turn."""
    hub_n = args.hub_n or sorted({min(n, HUB_MAX_N) for n in args.n})
    runs = []
    for n in sorted(set(args.n) | set(hub_n)):
        if "ours" in args.sides and n in args.n:
            runs.append(("ours", n))
        if "ours-hub" in args.sides and n in hub_n:
            runs.append(("ours-hub", n))
        if "batchspawner" in args.sides and n in hub_n and n <= args.batchspawner_max_n:
            runs.append(("batchspawner", n))
    return runs


def running_cap(runs: list[dict], side: str) -> int:
    """As many of this side's jobs as half the available memory holds, by their size measured
    in its smaller runs."""
    sizes = [r["job_pss_kib"] for r in runs if r["side"] == side and r.get("job_pss_kib")]
    if not sizes:
        return Settings.max_running
    return max(10, min(Settings.max_running, int(memory_available_kib() / 2 / max(sizes))))


def save(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
