"""BatchNotebookSpawner: a Secret and a BatchNotebook per server; the operator does the rest.

Composes kubespawner's client, slug and reflector helpers (it does not subclass KubeSpawner):
start() validates the user's options against the BatchCluster's profile, creates the Secret (the
server's environment and its report token) and the BatchNotebook, and waits for the operator to
mark it Ready. poll(), progress() and stop() read the one shared watch, never the scheduler.

A pod profile (`pod_profiles`, user_options {"pod": name}) runs the server as an ordinary pod in
this cluster instead: start, poll, stop, progress and the state go to a child KubeSpawner
(pod.py), and the state says which kind runs, so a restarted hub follows the right one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any, ClassVar

from jupyterhub.spawner import Spawner
from kubernetes_asyncio.client import ApiException
from kubespawner.clients import load_config, shared_client
from kubespawner.slugs import multi_slug, safe_slug
from tornado import web
from traitlets import Dict, Float, Integer, Unicode, default

from batchnotebook_api import (
    CLUSTERS,
    GROUP,
    NOTEBOOKS,
    REPORT_TOKEN_KEY,
    VERSION,
    own_secret_name,
)
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.status import REFUSALS, ConditionType, Phase
from batchnotebook_api.times import now

from . import notebooks
from .form import (
    options_from_form,
    options_from_query,
    render_form,
    user_group_names,
)
from .home import time_left_text
from .pod import PodProfiles, PodServer, chosen_pod_profile, wants_pod
from .progress import progress_event
from .queue_cap import queue_refusal, waiting_notebooks
from .reflector import NotebookReflector, running_reflector, shared_reflector
from .resources import notebook_manifest, notebook_spec, owned_by, secret_manifest


class BatchNotebookSpawner(Spawner):
    namespace = Unicode(
        help="Namespace of the BatchNotebooks and their Secrets (default: the hub's own)."
    ).tag(config=True)

    @default("namespace")
    def _namespace(self) -> str:
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        if os.path.exists(path):
            with open(path) as file:
                return file.read().strip()
        return os.environ.get("POD_NAMESPACE", "default")

    default_options = Dict(
        help="user_options for requests with none, e.g. {'cluster': 'hpc', 'profile': 'small'}."
    ).tag(config=True)

    extra_labels = Dict(help="Extra labels on every BatchNotebook and Secret.").tag(config=True)

    pod_profiles = PodProfiles(
        help="Profiles that run the server as a pod in this cluster through KubeSpawner, chosen "
        "with user_options {'pod': name}: [{name, display_name, description, groups, "
        "kubespawner_override}] (see pod.py)."
    ).tag(config=True)

    max_queued_per_user = Integer(
        3,
        help="Most servers of one user that may wait in a batch queue at once (not yet ready); "
        "0 for no cap. Pending spawns count against the hub's concurrent_spawn_limit for "
        "everyone, so one user's many named servers in a full partition would block all spawns.",
    ).tag(config=True)

    stop_timeout = Float(
        120,
        help="Seconds stop() tries to delete the BatchNotebook while the API server does not "
        "answer, then waits for the operator to confirm the job ended.",
    ).tag(config=True)

    k8s_api_host = Unicode(None, allow_none=True, help="API server URL (default: kubeconfig).").tag(
        config=True
    )

    @default("ip")
    def _ip(self) -> str:
        return "0.0.0.0"  # the hub reaches the server from another host

    @default("env_keep")
    def _env_keep(self) -> list[str]:
        # The hub's PATH, VIRTUAL_ENV or PYTHONPATH mean nothing on a compute node.
        return ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]

    @default("apply_user_options")
    def _apply_user_options(self) -> Any:
        # JupyterHub 5.3+ calls this early in a spawn: bad options fail there with a 400.
        # start() validates again, for older hubs and because the cluster may change meanwhile.
        async def validate(spawner: BatchNotebookSpawner, _options: dict) -> None:
            if wants_pod(spawner.user_options or spawner.default_options):
                chosen_pod_profile(spawner, spawner.user_options or spawner.default_options)
            else:
                await spawner.validated_spec()

        return validate

    @default("options_form")
    def _options_form(self) -> Any:
        return render_form

    @default("options_from_form")
    def _options_from_form(self) -> Any:
        return options_from_form

    def options_from_query(self, query_data: dict[str, list[str]]) -> dict:
        # JupyterHub would start the server at once; a link fills in the form instead.
        return options_from_query(query_data)

    @default("start_timeout")
    def _start_timeout(self) -> int:
        # Waiting in a queue is normal, not a failure: the hub never gives up on a queued job.
        # A profile's maxQueueWait (enforced by the operator) or the user's cancel ends the wait.
        return 365 * 24 * 3600

    @default("poll_interval")
    def _poll_interval(self) -> int:
        return 5  # poll() reads the shared watch: no scheduler or API traffic

    # Per hub user, the BatchNotebooks whose start() runs here (they wait until Ready): counted
    # with the watch's, which sees a new one only after it has been created.
    _starting: ClassVar[dict[str, set[str]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        load_config(host=self.k8s_api_host)
        self.port = 0  # the job reports the port it really listens on
        self.pod_server: PodServer | None = None  # while a pod profile's server runs

    # --- names and clients -------------------------------------------------------------

    @property
    def resource_name(self) -> str:
        return "nb-" + multi_slug([self.user.name, self.name or "default"], max_length=55)

    @property
    def secret_name(self) -> str:
        return own_secret_name(self.resource_name)  # the only Secret the operator accepts

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/managed-by": "batchnotebook-spawner",
            "app.kubernetes.io/component": "singleuser-server",
            f"{GROUP}/hub-user": safe_slug(self.user.name, max_length=63),
            f"{GROUP}/server-name": safe_slug(self.name or "default", max_length=63),
            **self.extra_labels,
        }

    @property
    def custom(self) -> Any:
        return shared_client("CustomObjectsApi")

    @property
    def core(self) -> Any:
        return shared_client("CoreV1Api")

    async def reflector(self) -> NotebookReflector:
        return await shared_reflector(self, self.namespace)

    async def notebook(self) -> dict | None:
        return (await self.reflector()).get(self.namespace, self.resource_name)

    # --- options ------------------------------------------------------------------------

    async def cluster_spec(self, name: str) -> dict:
        try:
            cluster = await self.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, name)
        except ApiException as error:
            if error.status == 404:
                raise InvalidOptions(f"there is no cluster named {name!r}") from error
            raise
        return cluster["spec"]

    async def validated_spec(self) -> dict:
        """The BatchNotebook spec for self.user_options, or a 400 that says what is wrong."""
        try:
            return await notebook_spec(
                self.user_options or self.default_options,
                self.cluster_spec,
                self.user.name,
                self.name or "",
                sorted(user_group_names(self)),
                self.secret_name,
            )
        except InvalidOptions as error:
            raise web.HTTPError(400, "Invalid server options: %s", error) from error

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> str:
        options = self.user_options or self.default_options
        if wants_pod(options):
            self.pod_server = PodServer(self, chosen_pod_profile(self, options))
            return await self.pod_server.start(self)
        spec = await self.validated_spec()  # before anything is created
        await self._take_queue_place()
        try:
            return await self._start_notebook(spec)
        finally:
            self._starting.get(self.user.name, set()).discard(self.resource_name)

    async def _take_queue_place(self) -> None:
        """A 429 if the user already has max_queued_per_user servers waiting; else this server
        counts as waiting until its start() ends. No await between the count and the taking:
        simultaneous requests of one user are counted one after the other."""
        reflector = await self.reflector()
        waiting = waiting_notebooks(reflector.resources.values(), self.user.name)
        waiting |= self._starting.get(self.user.name, set())
        waiting.discard(self.resource_name)  # this server's own leftover goes anyway
        refused = queue_refusal(len(waiting), self.max_queued_per_user)
        if refused:
            raise web.HTTPError(429, "Too many servers waiting: %s", refused)
        self._starting.setdefault(self.user.name, set()).add(self.resource_name)

    async def _start_notebook(self, spec: dict) -> str:
        await self._remove_leftovers()
        environment = {**self.get_env(), REPORT_TOKEN_KEY: secrets.token_urlsafe(32)}
        metadata = {"name": self.resource_name, "namespace": self.namespace, "labels": self.labels}
        await self.core.create_namespaced_secret(
            self.namespace, secret_manifest(metadata, self.secret_name, environment)
        )
        notebook = await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, NOTEBOOKS, notebook_manifest(metadata, spec)
        )
        await self.core.patch_namespaced_secret(
            self.secret_name, self.namespace, owned_by(notebook)
        )
        self.log.info(
            "Created BatchNotebook %s/%s on %s (%s)",
            self.namespace,
            self.resource_name,
            spec["clusterName"],
            spec["profile"],
        )
        return await self._wait_ready(notebook["metadata"]["uid"])

    async def _wait_ready(self, uid: str) -> str:
        seen = False
        while True:
            notebook = await self.notebook()
            if notebook is not None and notebook["metadata"]["uid"] == uid:
                seen = True
                status = notebook.get("status", {})
                phase = status.get("phase")
                if phase == Phase.READY.value and status.get("url"):
                    return status["url"]
                if phase and Phase(phase).terminal:
                    await self._start_failed(status)
            elif seen:
                # Deleted while waiting (a cancelled spawn: the hub does not cancel start()):
                # stop waiting, so that it no longer counts as a server in the queue.
                raise web.HTTPError(500, "The server was stopped before it was ready")
            await asyncio.sleep(0.5)

    async def _start_failed(self, status: dict) -> None:
        """A start that failed leaves nothing behind and says why, in the scheduler's words."""
        await self.stop(now=True)
        reason = next(
            (
                c.get("reason")
                for c in status.get("conditions", [])
                if c.get("type") == ConditionType.SUBMITTED and c.get("status") == "False"
            ),
            "",
        )
        code = 400 if reason in REFUSALS else 500
        raise web.HTTPError(code, "The server could not start: %s", status.get("message"))

    async def _remove_leftovers(self) -> None:
        """A resource left from an earlier run of this server (e.g. a failed start) goes first."""
        if await self.notebook() is not None:
            self.log.info("Removing leftover BatchNotebook %s", self.resource_name)
            await self.stop()
        await notebooks.ignore_missing(
            self.core.delete_namespaced_secret, self.secret_name, self.namespace
        )

    async def poll(self) -> int | None:
        if self.pod_server:
            return await self.pod_server.poll(self)
        notebook = await self.notebook()
        if notebook is None:
            # The watch's cache can miss a notebook around an API server restart. "Gone" makes
            # the hub skip stop() and leave the job running: only the API server may say it.
            try:
                notebook = await self._read_notebook()
            except notebooks.API_ERRORS as error:
                self.log.warning("cannot tell whether %s runs: %s", self.resource_name, error)
                return None
            if notebook is None:
                return 0
        status = notebook.get("status", {})
        phase = Phase(status.get("phase") or "Pending")
        if phase.terminal or notebook["metadata"].get("deletionTimestamp"):
            if phase.terminal:
                # The hub calls stop() only for servers that poll() says still run: an ended
                # job's BatchNotebook and Secret would stay behind.
                self.log.info(
                    "%s ended (%s): %s", self.resource_name, phase.value, status.get("message")
                )
                if not await self._delete_notebook():
                    return None  # still the hub's to stop(), or a later poll() deletes it
            return status.get("exitCode") or (0 if phase is Phase.COMPLETED else 1)
        if status.get("readyAt") and phase is not Phase.READY:
            # Was Ready and is no longer (its job went back to the queue, or is ending): the host
            # and port the proxy routes to may be anyone's now. The hub polls it no more, nor
            # stops it: deleted here, or a requeued job would run for nobody and an ended
            # notebook would stay behind (found by the chaos campaign).
            self.log.info("%s no longer ready: %s", self.resource_name, status.get("message"))
            return 1 if await self._delete_notebook() else None
        return None

    async def get_url(self) -> str:
        """Where the server is, asked by a hub that restarted while it was starting. The address
        in the hub's database was only a placeholder: a job still in the queue has none yet,
        so wait until it runs and reports one (else the hub waits on the placeholder, gives up
        and cancels a job that was about to start). An ended notebook keeps the placeholder:
        the hub then finds nothing there and stops the server, as it should."""
        if self.pod_server:
            return await super().get_url()
        while True:
            notebook = await self.notebook()
            if notebook is None or notebook["metadata"].get("deletionTimestamp"):
                return self.server.url
            status = notebook.get("status", {})
            phase = Phase(status.get("phase") or "Pending")
            if phase is Phase.READY and status.get("url"):
                return status["url"]
            if phase.terminal:
                return self.server.url
            await asyncio.sleep(0.5)  # the reflector's cache: no request to the API server

    async def _read_notebook(self) -> dict | None:
        return await notebooks.read_notebook(self.custom, self.namespace, self.resource_name)

    async def _delete_notebook(self) -> bool:
        """The BatchNotebook and its Secret go (the operator's finalizer cancels a live job);
        False if the API server did not answer: a later poll() or stop() tries again."""
        try:
            await notebooks.delete_notebook(
                self.custom, self.core, self.namespace, self.resource_name, self.secret_name
            )
            return True
        except notebooks.API_ERRORS as error:
            self.log.warning("cannot delete %s yet: %s", self.resource_name, error)
            return False

    async def stop(self, now: bool = False) -> None:
        if self.pod_server:
            return await self.pod_server.stop(now)
        # The hub forgets the server however stop() ends: the deletion outlasts API restarts.
        if not await notebooks.delete_until_taken(self.custom, self.core, self.namespace,
                                        self.resource_name, self.secret_name, self.stop_timeout,
                                        self.log):  # fmt: skip
            return
        # Wait (bounded) until the operator has confirmed that the job ended.
        deadline = asyncio.get_running_loop().time() + (0 if now else self.stop_timeout)
        while await self.notebook() is not None:
            if asyncio.get_running_loop().time() > deadline:
                self.log.warning("BatchNotebook %s still terminating", self.resource_name)
                return
            await asyncio.sleep(0.5)

    async def progress(self) -> Any:
        if self.pod_server:
            async for event in self.pod_server.progress():
                yield event
            return
        seen = None
        while True:
            notebook = await self.notebook()
            event = progress_event((notebook or {}).get("status", {}), now())
            if (event["phase"], event["message"]) != seen:
                seen = (event["phase"], event["message"])
                yield event
            phase = Phase(event["phase"])
            if phase is Phase.READY or phase.terminal:
                return
            await asyncio.sleep(0.5)

    @property
    def batch_time_left(self) -> str:
        """How long the running server may still run, for the hub's home page; "" if unknown.
        Read from the shared watch, so the page costs no API call."""
        reflector = running_reflector(self.namespace)
        notebook = reflector.get(self.namespace, self.resource_name) if reflector else None
        status = (notebook or {}).get("status", {})
        if status.get("phase") != Phase.READY.value:
            return ""
        return time_left_text(status.get("endsAt"), now())

    def get_state(self) -> dict:
        state = super().get_state()
        if self.pod_server:
            state["pod"] = self.pod_server.state()
        else:
            state["notebook"] = f"{self.namespace}/{self.resource_name}"
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if "pod" in state:  # a pod profile's server: follow its pod again
            self.pod_server = PodServer.resumed(self, state["pod"])

    def clear_state(self) -> None:
        super().clear_state()
        self.port = 0
        self.pod_server = None
