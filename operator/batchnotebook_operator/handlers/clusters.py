"""BatchCluster: one poller per cluster asks the scheduler about all its notebooks at once
(poller.py: when; rounds.py: what a round does; backlog.py: the cancels it still owes). The
handlers only run it and keep a cluster while notebooks or pending cancels need it."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from batchnotebook_api import CLUSTERS, GROUP, VERSION

from ..backlog import PENDING_CANCELS, entries_of, settle
from ..errors import SchedulerUnavailable
from ..metrics import count_pending_cancels, count_phases, forget_cluster
from ..poller import DEFAULT_POLL_INTERVAL_SECONDS, ClusterPoller
from ..registry import registry

log = logging.getLogger(__name__)


def followed(notebooks_by_cluster: kopf.Index, name: str) -> list[dict]:
    """A cluster's notebooks as kopf's index has them, less those known to be gone."""
    return [n for n in notebooks_by_cluster.get(name, []) if n["uid"] not in registry.gone]


def forget_the_forgotten(notebooks_by_cluster: kopf.Index) -> None:
    """A ghost kopf's index has dropped (an operator restart lists afresh) needs no filter."""
    indexed = {n["uid"] for notebooks in notebooks_by_cluster.values() for n in notebooks}
    registry.gone.intersection_update(indexed)


async def still_there(notebook: dict) -> bool:
    """Asks the API server whether an indexed notebook exists (the same one, not a namesake)."""
    found = await registry.kube.notebook(notebook["namespace"], notebook["name"])
    if found is None or found["metadata"]["uid"] != notebook["uid"]:
        registry.gone.add(notebook["uid"])
        return False
    return True


@kopf.index(GROUP, VERSION, CLUSTERS)
async def clusters_by_name(name: str, spec: kopf.Spec, **_: Any) -> dict:
    return {name: dict(spec)}


# The type: ignore[arg-type] on kopf decorators here: kopf's handler protocols cannot express
# a handler taking a kopf index by name.
@kopf.daemon(GROUP, VERSION, CLUSTERS, cancellation_timeout=5)  # type: ignore[arg-type]
async def follow_cluster(
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    stopped: kopf.DaemonStopped,
    notebooks_by_cluster: kopf.Index,
    **_: Any,
) -> None:
    poller = ClusterPoller.from_status(name, dict(status))
    try:
        while not stopped:
            started = time.monotonic()
            forget_the_forgotten(notebooks_by_cluster)
            notebooks = followed(notebooks_by_cluster, name)
            count_phases(name, notebooks)
            pending = entries_of(status)  # kopf keeps a daemon's status up to date
            count_pending_cancels(name, len(pending))
            client = registry.client(name, dict(spec))
            update = await poller.round(
                client, dict(spec), meta.get("generation"), notebooks, pending
            )
            try:
                await registry.kube.patch_cluster_status(name, update)
            except Exception:
                log.exception("cluster %s: cannot write status", name)
            await poller.next_round(
                stopped,
                lambda: followed(notebooks_by_cluster, name),
                dict(spec),
                started,
                update["lastPollDurationSeconds"],
            )
    finally:
        await registry.forget(name)  # a deleted cluster's connection goes with it
        forget_cluster(name)


@kopf.on.delete(GROUP, VERSION, CLUSTERS)  # type: ignore[arg-type]  # index by name
async def keep_while_in_use(
    name: str, spec: kopf.Spec, status: kopf.Status, notebooks_by_cluster: kopf.Index, **_: Any
) -> None:
    """A cluster goes only after its notebooks: deleting them cancels their jobs, which needs the
    cluster's connection and commands (like a PersistentVolumeClaim in use); and only after its
    cancel backlog, which kopf has stopped the rounds for, is worked off here."""
    # Each confirmed with the API server (the index may hold ghosts, see registry.gone), up to
    # five for the message.
    users: list[str] = []
    for notebook in followed(notebooks_by_cluster, name):
        if await still_there(notebook):
            users.append(f"{notebook['namespace']}/{notebook['name']}")
            if len(users) == 5:
                break
    if users:
        raise kopf.TemporaryError(
            f"BatchNotebooks still use this cluster: {', '.join(users)}"
            + (" and more" if len(users) == 5 else ""),
            delay=5,
        )
    pending = entries_of(status)
    if pending:
        interval = spec.get("pollIntervalSeconds", DEFAULT_POLL_INTERVAL_SECONDS)
        try:
            pending = await settle(registry.kube, registry.client(name, dict(spec)), name, pending)
        except SchedulerUnavailable as error:
            raise kopf.TemporaryError(f"cancel backlog: {error}", delay=interval) from error
        if pending:
            raise kopf.TemporaryError(
                f"{len(pending)} jobs of deleted notebooks wait to be cancelled "
                f"(status.{PENDING_CANCELS}), e.g. {pending[0].describe()}",
                delay=interval,
            )
