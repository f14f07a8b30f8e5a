"""A short seeded chaos campaign (chaos/): a dozen faults of every kind (operator, API server,
etcd, slurmctld, the login node's sshd) while users start, stop and scancel servers on a local
and an SSH site; every fault must be recovered and no invariant violated. Its own API server,
operator and login node, on ports next to this suite's."""

from __future__ import annotations

import json
import os
import sys

import pytest

from .stack import API_PORT, OPERATOR_PORT, REPO, STATE, run

pytestmark = [pytest.mark.slurm, pytest.mark.cluster]

SEED = 15  # draws all five kinds in 12 faults (python -m chaos plan --seed 15 ...)
FAULTS = 12


def test_a_short_campaign_violates_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'dev'}:{REPO}"}
    run(
        sys.executable, "-m", "chaos", "run", "--seed", str(SEED), "--faults", str(FAULTS),
        "--gap", "2", "5", "--down", "1", "6", "--warmup", "15",
        "--state", STATE / "chaos", "--out", tmp_path,
        "--api-port", str(API_PORT + 70), "--operator-port", str(OPERATOR_PORT + 70),
        "--sshd-port", str(OPERATOR_PORT + 92),
        cwd=REPO, env=env, timeout=900,
    )  # fmt: skip
    raw = json.loads((tmp_path / "results.json").read_text())
    rows = {row["kind"]: row for row in raw["rows"]}
    assert set(rows) == {"operator", "apiserver", "etcd", "slurmctld", "sshd"}
    assert sum(row["injected"] for row in rows.values()) == FAULTS
    assert all(row["recovered"] == row["injected"] for row in rows.values()), rows
    assert raw["violations"] == []
    assert raw["notebooks_started"] > 0 and raw["leftover_jobs_cancelled"] == []
