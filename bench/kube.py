"""The API server side of the benchmark: its request counters, notebooks created the way the
spawner creates them, and a watch that timestamps every status change as it arrives."""

from __future__ import annotations

import base64
import re
import secrets
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import urllib3
from kubernetes import client, config, watch

from tests.integration.stack import kubectl

GROUP, VERSION = "batchnotebook.dev", "v1alpha1"
REQUEST_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
SECONDS_LINE = re.compile(
    r"^apiserver_request_duration_seconds_sum\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)
LABEL = re.compile(r'(\w+)="([^"]*)"')
TERMINAL = {"Completed", "Failed", "Cancelled"}
REPORTED = "reported"  # not a phase: when the status first carried the job's report

RequestKey = tuple[str, str, str]  # verb, resource, subresource


def _by_request(kubeconfig: Path, metric: re.Pattern) -> Counter[RequestKey]:
    counts: Counter[RequestKey] = Counter()
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").splitlines():
        match = metric.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        if labels.get("resource"):
            key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
            counts[key] += float(match["value"])
    return counts


def apiserver_requests(kubeconfig: Path) -> Counter[RequestKey]:
    """apiserver_request_total by verb, resource and subresource (resource requests only)."""
    return Counter(
        {key: int(value) for key, value in _by_request(kubeconfig, REQUEST_LINE).items()}
    )


def apiserver_seconds(kubeconfig: Path) -> Counter[RequestKey]:
    """Seconds the API server spent answering (apiserver_request_duration_seconds_sum)."""
    return _by_request(kubeconfig, SECONDS_LINE)


def api_clients(kubeconfig: Path) -> tuple[client.CoreV1Api, client.CustomObjectsApi]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    # Hundreds of creates from a thread pool: one connection per worker.
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 64
    return client.CoreV1Api(api), client.CustomObjectsApi(api)


def create_notebook(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    cluster: str,
    user: str,
) -> None:
    """A Secret and a BatchNotebook, as the spawner makes them (tests/integration/conftest.py)."""
    env = {
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:0/user/{user}/{name}/",
        "BATCHNOTEBOOK_REPORT_TOKEN": secrets.token_urlsafe(16),
    }
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": f"{name}-env"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in env.items()},
        },
    )
    notebook = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "batchnotebooks",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BatchNotebook",
            "metadata": {"name": name},
            "spec": {
                "clusterName": cluster,
                "profile": "bench",
                "hubUser": user,
                "unixUser": user,
                "envSecretName": f"{name}-env",
            },
        },
    )
    # The operator uses only a Secret its notebook owns.
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BatchNotebook", "name": name}
    core.patch_namespaced_secret(
        f"{name}-env",
        namespace,
        {"metadata": {"ownerReferences": [{**owner, "uid": notebook["metadata"]["uid"]}]}},
    )


class NotebookWatch(threading.Thread):
    """Watches one namespace's BatchNotebooks and records when each phase was first seen, and the
    job id; `gone` holds the names whose DELETED event arrived."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom = custom
        self.namespace = namespace
        self.lock = threading.Lock()
        self.phase_seen: dict[str, dict[str, float]] = {}
        self.job_ids: dict[str, str] = {}
        self.gone: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        resource_version = ""
        while not self.stopping.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    "batchnotebooks",
                    resource_version=resource_version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    seen = time.time()
                    obj = event["object"]
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._record(event["type"], obj, seen)
                    if self.stopping.is_set():
                        return
            except (client.ApiException, urllib3.exceptions.HTTPError) as error:
                if self.stopping.is_set():
                    return
                # Expired resource version (410) or a dropped connection: list again; phases
                # already seen keep their first time.
                resource_version = ""
                print(f"bench: watch restarted after {error}", file=sys.stderr, flush=True)
                time.sleep(1)

    def _record(self, kind: str, obj: dict, seen: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        with self.lock:
            if kind == "DELETED":
                self.gone.add(name)
                return
            phases = self.phase_seen.setdefault(name, {})
            phases.setdefault(status.get("phase", "Pending"), seen)
            if status.get("reportedPort"):  # the job's launcher reached the operator
                phases.setdefault(REPORTED, seen)
            if status.get("jobId"):
                self.job_ids[name] = status["jobId"]

    def first_seen(self, name: str, phases: set[str]) -> float | None:
        with self.lock:
            times = [t for p, t in self.phase_seen.get(name, {}).items() if p in phases]
        return min(times) if times else None

    def count(self, phases: set[str]) -> int:
        with self.lock:
            return sum(1 for seen in self.phase_seen.values() if seen.keys() & phases)

    def stop(self) -> None:
        self.stopping.set()
