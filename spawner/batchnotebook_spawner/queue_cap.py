"""A per-user cap on servers waiting in a batch queue.

JupyterHub counts a spawn as pending until the server is ready, against its
concurrent_spawn_limit for everyone: one user opening a hundred named servers into a full
partition would block every other user's spawns. So a user may have only a few servers waiting.
"""

from __future__ import annotations

from collections.abc import Iterable

from batchnotebook_api.status import Phase

WAITING = frozenset(phase.value for phase in Phase if phase.before_ready)


def waiting_notebooks(notebooks: Iterable[dict], hub_user: str) -> set[str]:
    """Names of `hub_user`'s BatchNotebooks that are not Ready yet and have not ended (pending,
    queued or starting), leaving out those being deleted."""
    waiting = set()
    for notebook in notebooks:
        if notebook.get("spec", {}).get("hubUser") != hub_user:
            continue
        if notebook["metadata"].get("deletionTimestamp"):
            continue
        if (notebook.get("status", {}).get("phase") or "Pending") in WAITING:
            waiting.add(notebook["metadata"]["name"])
    return waiting


def queue_refusal(waiting: int, cap: int) -> str | None:
    """Why one more server may not start when `waiting` already wait (cap 0: no cap), or None."""
    if cap <= 0 or waiting < cap:
        return None
    servers = "server" if waiting == 1 else "servers"
    return (
        f"you already have {waiting} {servers} waiting in a queue (at most {cap}); "
        "stop one or wait until one has started"
    )
