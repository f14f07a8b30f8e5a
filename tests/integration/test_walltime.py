"""Walltime on the real Slurm: a 2-minute notebook shows when it ends, is warned before, and its
server is stopped cleanly before Slurm's limit, so that it ends Completed rather than TIMEOUT."""

from __future__ import annotations

import datetime as dt

import pytest

from .stack import wait_for
from .test_operator import events_of

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

WALLTIME_SECONDS = 120


def parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_warned_then_stopped_before_the_walltime(
    operator, make_cluster, make_notebook, wait_phase, notebook_status, core, namespace
):
    cluster = make_cluster(walltimeWarningSeconds=90, stopBeforeWalltimeSeconds=60)
    name = make_notebook(cluster, resources={"walltime": "00:02:00"})["metadata"]["name"]

    ready = wait_phase(name, "Ready")
    assert ready["walltimeSeconds"] == WALLTIME_SECONDS
    # Slurm's own end time: its start plus the walltime (startedAt is when a poll first saw it).
    ends_at = parse(wait_for(lambda: notebook_status(name).get("endsAt"), 20, "endsAt"))
    assert abs((ends_at - parse(ready["startedAt"])).total_seconds() - WALLTIME_SECONDS) < 10

    def warned() -> dict | None:
        status = notebook_status(name)
        ending = [c for c in status.get("conditions", []) if c["type"] == "WalltimeEnding"]
        return status if ending and ending[0]["status"] == "True" else None

    wait_for(warned, 60, "the WalltimeEnding condition")
    assert dt.datetime.now(dt.UTC) < ends_at
    warnings = [e for e in events_of(core, namespace, name) if e[1] == "WalltimeEnding"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"

    ended = wait_phase(name, "Completed", "Failed", "Cancelled", timeout=90)
    assert ended["phase"] == "Completed", ended["message"]
    assert ended["message"].startswith("the server was stopped before its walltime ended")
    assert parse(ended["finishedAt"]) < ends_at
    # Warned once, however many polls saw the notebook within the warning.
    assert [e for e in events_of(core, namespace, name) if e[1] == "WalltimeEnding"] == warnings
