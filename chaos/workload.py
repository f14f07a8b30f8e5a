"""Users starting and stopping servers, as the spawner does it (a Secret, a BatchNotebook that
owns it; a stop deletes the BatchNotebook), some with a walltime that ends during the campaign,
some jobs cancelled outside the hub (scancel), admins editing a BatchCluster, and the hub's
part: a notebook whose job ended is deleted, as the hub's poll stops its server. The
choices come from the campaign's seed; when each lands depends on the running system."""

from __future__ import annotations

import base64
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from kubernetes import client

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION
from tests.integration.stack import run

from . import sites
from .invariants import ENDED_PHASES, Job, Notebook, Reading
from .stack import API_ERRORS, TIMEOUT, Stack, meta

USERS = ("alice", "bob")
SHORT_WALLTIME = "00:03:00"  # ends during a campaign: the launcher stops Jupyter before it


def notebook_of(item: dict) -> Notebook:
    meta, status = item["metadata"], item.get("status") or {}
    deleting = meta.get("deletionTimestamp")
    return Notebook(
        name=meta["name"],
        uid=meta["uid"],
        unix_user=item["spec"]["unixUser"],
        phase=status.get("phase", "Pending"),
        job_id=status.get("jobId"),
        deleting_since=datetime.fromisoformat(deleting).timestamp() if deleting else None,
        message=status.get("message", ""),
        cluster=item["spec"].get("clusterName", ""),
        server=item["spec"].get("serverName"),
    )


def jobs_of(squeue_output: str, comment_prefix: str) -> tuple[Job, ...]:
    """The jobs of `squeue --format=%i|%j|%u|%T|%k` whose comment names our namespace: other
    suites share this Slurm."""
    jobs = []
    for line in squeue_output.splitlines():
        fields = line.split("|", 4)
        if len(fields) == 5 and fields[4].startswith(comment_prefix):
            jobs.append(Job(*fields[:4]))
    return tuple(jobs)


def read(stack: Stack) -> Reading | None:
    """The namespace's notebooks, then its jobs; None when the API server did not answer."""
    try:
        listed = stack.custom.list_namespaced_custom_object(
            GROUP, VERSION, stack.namespace, NOTEBOOKS, _request_timeout=TIMEOUT
        )
        items = cast(dict, listed)["items"]
    except API_ERRORS:
        return None
    queue = run(
        "squeue", "--noheader", "--all", "--states=all", "--format=%i|%j|%u|%T|%k", check=False
    )
    jobs = None if queue.returncode else jobs_of(queue.stdout, f"batchnotebook:{stack.namespace}/")
    if jobs is not None:
        jobs += sites.emulator_jobs()
    return Reading(tuple(notebook_of(item) for item in items), jobs)


@dataclass
class Workload:
    stack: Stack
    rng: random.Random
    max_notebooks: int = 12
    cancelled_outside: set[str] = field(default_factory=set)
    # Started with a walltime short enough to end during the campaign: they may end.
    short_lived: set[str] = field(default_factory=set)
    # Notebooks that ended without a cancel of ours: name → "phase: message". Not a violation
    # by itself (a job may fail), but each is worth a look.
    ended_unexpectedly: dict[str, str] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    failed_actions: int = 0
    created: int = 0
    # Deletions the API server did not take yet (a start that failed half-way, or a stop).
    to_delete: set[str] = field(default_factory=set)

    def step(self) -> None:
        """One user's action, after the hub's part."""
        live = self.step_hub()
        if live is None:
            return
        action = self.rng.choice(["start"] * 4 + ["short", "stop", "stop", "scancel", "edit"])
        if action in ("start", "short") and len(live) < self.max_notebooks:
            self._start(SHORT_WALLTIME if action == "short" else None)
        elif action == "stop" and live:
            self._delete(self.rng.choice(sorted(n.name for n in live)))
        elif action == "scancel":
            running = sorted(
                (n.name, n.cluster, n.job_id) for n in live if n.phase == "Ready" and n.job_id
            )
            if running:
                self._cancel_outside(*self.rng.choice(running))
        elif action == "edit":
            self._edit(self.rng.choice(sorted(self.stack.clusters.values())))
        self.actions[action] = self.actions.get(action, 0) + 1

    def step_hub(self) -> list[Notebook] | None:
        """The hub's part: servers whose job ended are stopped, stops the API server refused are
        tried again. Returns the notebooks not being deleted, None if the API server is down."""
        reading = read(self.stack)
        if reading is None:
            self.failed_actions += 1
            return None
        live = [n for n in reading.notebooks if n.deleting_since is None]
        self._hub_stops_ended(live)
        for name in sorted(self.to_delete):
            self._delete(name)
        return [n for n in live if n.name not in self.to_delete and n.phase not in ENDED_PHASES]

    def _hub_stops_ended(self, live: list[Notebook]) -> None:
        for notebook in live:
            if notebook.phase in ENDED_PHASES:
                if notebook.name not in self.cancelled_outside | self.short_lived | self.to_delete:
                    self.ended_unexpectedly[notebook.name] = f"{notebook.phase}: {notebook.message}"
                if notebook.server is None:  # the real hub stops the servers it started
                    self.to_delete.add(notebook.name)

    def _start(self, walltime: str | None) -> None:
        user = self.rng.choice(USERS)
        cluster = self.stack.clusters[self.rng.choice(sorted(self.stack.clusters))]
        self.created += 1
        name = f"nb-{user}-{self.created:04d}"
        if walltime:
            self.short_lived.add(name)
        try:
            create_notebook(self.stack, name, user, cluster, walltime)
        except API_ERRORS:
            # As a spawner whose start failed: whatever was made is deleted again.
            self.failed_actions += 1
            self.to_delete.add(name)

    def _delete(self, name: str) -> None:
        try:
            delete_notebook(self.stack, name)
            self.to_delete.discard(name)
        except API_ERRORS:
            self.failed_actions += 1
            self.to_delete.add(name)

    def _edit(self, cluster: str) -> None:
        """An admin's `kubectl edit`: a new generation of the BatchCluster while jobs run."""
        try:
            self.stack.custom.patch_cluster_custom_object(
                GROUP,
                VERSION,
                "batchclusters",
                cluster,
                {"spec": {"walltimeWarningSeconds": self.rng.randint(60, 600)}},
                _request_timeout=TIMEOUT,
            )
        except API_ERRORS:
            self.failed_actions += 1

    def _cancel_outside(self, name: str, cluster: str, job_id: str) -> None:
        if self.stack.cancel_outside(cluster, job_id):
            self.cancelled_outside.add(name)
        else:
            self.failed_actions += 1


def create_notebook(
    stack: Stack, name: str, user: str, cluster: str, walltime: str | None = None
) -> None:
    """A Secret and a BatchNotebook that owns it, as the spawner makes them."""
    env = {
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:0/user/{user}/{name}/",
        "BATCHNOTEBOOK_REPORT_TOKEN": secrets.token_urlsafe(16),
    }
    data: dict[str, bytes | str] = {
        k: base64.b64encode(v.encode()).decode() for k, v in env.items()
    }
    stack.core.create_namespaced_secret(
        stack.namespace,
        client.V1Secret(metadata=meta(f"{name}-env"), data=data),
        _request_timeout=TIMEOUT,
    )
    spec: dict = {"clusterName": cluster, "profile": "chaos", "hubUser": user, "unixUser": user}
    if walltime:
        spec["resources"] = {"walltime": walltime}
    notebook = stack.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        stack.namespace,
        NOTEBOOKS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BatchNotebook",
            "metadata": {"name": name},
            "spec": {**spec, "envSecretName": f"{name}-env"},
        },
        _request_timeout=TIMEOUT,
    )
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchNotebook", "name": name}
    stack.core.patch_namespaced_secret(
        f"{name}-env",
        stack.namespace,
        {
            "metadata": {
                "ownerReferences": [{**owner, "uid": cast(dict, notebook)["metadata"]["uid"]}]
            }
        },
        _request_timeout=TIMEOUT,
    )


def delete_notebook(stack: Stack, name: str) -> None:
    """As the spawner's stop(): the BatchNotebook and its Secret; either may be gone already."""
    deletions = (
        lambda: stack.custom.delete_namespaced_custom_object(
            GROUP, VERSION, stack.namespace, NOTEBOOKS, name, _request_timeout=TIMEOUT
        ),
        lambda: stack.core.delete_namespaced_secret(
            f"{name}-env", stack.namespace, _request_timeout=TIMEOUT
        ),
    )
    for delete in deletions:
        try:
            delete()
        except client.ApiException as error:
            if error.status != 404:
                raise


class Loop(threading.Thread):
    """Calls `action` every `every` seconds until stopped; what it raises is kept, not lost."""

    def __init__(self, action: Callable[[], None], every: float) -> None:
        super().__init__(daemon=True)
        self.action, self.every = action, every
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                self.action()
            except BaseException as error:  # the runner reports it
                self.error = error
                return

    def stop(self) -> None:
        self.stopping.set()
        if self.ident is not None:  # started
            self.join(30)
