"""BatchClusters on the dialect emulators (tests/emulators), each test stack with its own spool so
that its queues, settings and "server down" switches never touch `make dev`'s or another run's."""

from __future__ import annotations

from pathlib import Path

from batchnotebook_api import GROUP, VERSION

from .stack import REPO, STATE

EMULATORS = REPO / "tests" / "emulators"
SPOOL = Path("/var/spool/bnb-emulators-test") / STATE.name.lstrip(".")


def emulated_cluster(make_cluster, dialect: str, timeout: int = 30, **overrides) -> str:
    return make_cluster(
        scheduler=dialect,
        connection={
            "type": "local",
            "commandTimeoutSeconds": timeout,
            "binDirectory": str(EMULATORS / dialect / "bin"),
            # sudo resets the environment: the spool goes through env(1), after the user switch.
            "runAsCommand": [
                "sudo",
                "-n",
                "-u",
                "{user}",
                "--",
                "/usr/bin/env",
                f"BNB_EMULATOR_SPOOL={SPOOL}",
            ],
            "environment": {"BNB_EMULATOR_SPOOL": str(SPOOL)},
        },
        **overrides,
    )


def cluster_unreachable(custom, cluster: str) -> str:
    """The Reachable condition's message while it is False, else ""."""
    conditions = (
        custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", cluster)
        .get("status", {})
        .get("conditions", [])
    )
    return next(
        (
            c["message"]
            for c in conditions
            if c["type"] == "SchedulerReachable" and c["status"] == "False"
        ),
        "",
    )
