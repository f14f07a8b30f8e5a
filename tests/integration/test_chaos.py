"""A short seeded chaos campaign (chaos/): each kind of fault once (the leading operator replica,
the API server, etcd, slurmctld, slurmdbd, slurmd, slurmrestd, the login node's sshd, and the
network cut, lossy, slowed, stalled and reset) while users start, stop and scancel servers on a
local, an SSH and a slurmrestd site and an admin edits the BatchClusters; every fault must be
recovered and no invariant violated. Its own API server, two operator replicas, login node and
Toxiproxy, on ports next to this suite's (the second replica on the first's + 10, Toxiproxy on
the sshd's + 1 to + 4)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from chaos.schedule import KINDS

from .stack import API_PORT, OPERATOR_PORT, REPO, STATE, run

pytestmark = [pytest.mark.slurm, pytest.mark.cluster]

SEED = 15
FAULTS = len(KINDS)  # each kind once, in the order the seed shuffles them


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
    assert set(rows) == set(KINDS)
    assert sum(row["injected"] for row in rows.values()) == FAULTS
    assert all(row["recovered"] == row["injected"] for row in rows.values()), rows
    assert raw["violations"] == []
    assert raw["notebooks_started"] > 0 and raw["leftover_jobs_cancelled"] == []
    # The operator fault killed the leader: the standby took over (the Lease's 15 s at most,
    # plus a poll of every site).
    assert rows["operator"]["outage_p50"] is not None
