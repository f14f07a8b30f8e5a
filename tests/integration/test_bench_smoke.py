"""The benchmark (bench/) keeps working: the harness at N=3, our side only, on its own API server
and operator (ports next to this suite's), real Slurm.  No timing is asserted: only that the
results are written with their columns and that polling stays at one status query per
interval."""

from __future__ import annotations

import json
import sys

import pytest

from .stack import API_PORT, OPERATOR_PORT, REPO, STATE, run

pytestmark = [pytest.mark.slurm, pytest.mark.cluster]

# Beside this suite's own API server and operator, which would otherwise follow the benchmark's
# notebooks too.
BENCH_API_PORT = API_PORT + 60
BENCH_OPERATOR_PORT = OPERATOR_PORT + 60


def test_bench_writes_results_and_polls_once_per_interval(tmp_path):
    run(
        sys.executable,
        "-m",
        "bench.run",
        "--n",
        "3",
        "--sides",
        "ours",
        "--poll-interval",
        "2",
        "--steady-seconds",
        "10",
        "--state",
        STATE / "bench-smoke",
        "--api-port",
        str(BENCH_API_PORT),
        "--operator-port",
        str(BENCH_OPERATOR_PORT),
        "--out",
        tmp_path,
        cwd=REPO,
        timeout=900,
    )
    results = (tmp_path / "results.md").read_text()
    for column in (
        "status queries / interval",
        "operator CPU",
        "API requests / interval",
        "state change → status p50 / p99 s",
        "overhead p50 / p99 s",
    ):
        assert column in results
    assert (tmp_path / "scheduler_calls.png").stat().st_size > 0

    (measured,) = json.loads((tmp_path / "raw.json").read_text())["runs"]
    assert measured["ready"] == 3
    steady = measured["steady"]
    # The harness counted real squeue calls through its wrappers, one per round at most.
    assert steady["status_queries"] >= 1
    assert steady["status_queries"] <= steady["seconds"] / measured["poll_interval"] + 1
    assert steady["calls"].get("sbatch", 0) == 0
