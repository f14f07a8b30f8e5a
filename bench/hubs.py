"""Both sides through a real JupyterHub's REST API: our BatchNotebookSpawner (with the operator)
and batchspawner 1.3.0's SlurmSpawner, each hub with its own proxy, ports and state directory.
Measured the same way on both: N named servers of alice requested at once, the time until the
hub says each is ready, Slurm commands (counting wrappers), the hub's (and our operator's) CPU
and memory, and how long a job cancelled from outside takes to disappear from the hub."""

from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devstack.host import OperatorProcess
from devstack.hub import ProcessHub
from devstack.hub import install as install_proxy
from tests.integration.stack import REPO, STAND_IN, delete_notebook, run, wait_for

from . import counting
from .common import BENCH_USER, PARTITION, Settings, jobs_memory_kib, wait_for_accounting
from .kube import GROUP, VERSION, NotebookWatch, api_clients
from .ours import cluster_exists, cluster_spec, create_cluster, delete_cluster
from .procstat import cpu_times, memory_kib

BATCHSPAWNER_VENV = REPO / ".venv-batchspawner"
HUB_POLL_SECONDS = 0.5  # how often the benchmark asks the hub which servers are ready


class HubProcess:
    """configurable-http-proxy and JupyterHub of one side (devstack.hub), no idle culler."""

    def __init__(self, state: Path, port: int, venv: Path, config: Path, env: dict) -> None:
        self.state = state
        self.url = f"http://127.0.0.1:{port}"
        self.token = secrets.token_hex(16)
        settings = {
            "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "PUBLIC_PORT": port,
            "PROXY_API_PORT": port + 1,
            "HUB_PORT": port + 81,
            "HUB_API_TOKEN": self.token,
            "DEV_PASSWORD": secrets.token_hex(8),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
            "IDLE_CULL_TIMEOUT": 0,
            **env,
        }
        self.processes = ProcessHub(state, settings, config, venv)

    def start(self) -> None:
        install_proxy()
        shutil.rmtree(self.state, ignore_errors=True)
        self.processes.start()

    @property
    def pid(self) -> int:
        pid = self.processes.hub.pid()
        assert pid is not None, f"the hub exited: {self.state}/logs/hub.log"
        return pid

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as answer:
                text = answer.read().decode()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def servers(self) -> dict[str, dict]:
        status, model = self.api("GET", f"/users/{BENCH_USER}")
        assert status == 200, model
        return model["servers"]

    def stop(self) -> None:
        self.processes.stop()


class ReadyWatch(threading.Thread):
    """Asks the hub every HUB_POLL_SECONDS which servers are ready; first time seen ready, and
    first time seen gone after having been ready."""

    def __init__(self, hub: HubProcess) -> None:
        super().__init__(daemon=True)
        self.hub = hub
        self.ready_at: dict[str, float] = {}
        self.gone_at: dict[str, float] = {}
        self.states: dict[str, dict] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(HUB_POLL_SECONDS):
            try:
                servers = self.hub.servers()
            except (OSError, AssertionError):
                continue  # a busy hub: ask again
            seen = time.time()
            for name, server in servers.items():
                if server.get("ready"):
                    self.ready_at.setdefault(name, seen)
                    self.states[name] = server.get("state") or {}
            for name in self.ready_at.keys() - servers.keys():
                self.gone_at.setdefault(name, seen)


def spawn_all(hub: HubProcess, names: list[str], options: dict) -> dict[str, float]:
    """POST every server at once (one thread each, as many browsers would); when each was asked."""
    requested_at: dict[str, float] = {}
    refused: dict[str, str] = {}

    def spawn(name: str) -> None:
        requested_at[name] = time.time()
        status, answer = hub.api("POST", f"/users/{BENCH_USER}/servers/{name}", options)
        if status not in (201, 202):
            refused[name] = f"{status} {answer}"

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(spawn, names))
    for name, why in list(refused.items())[:3]:
        print(f"bench: spawn {name} refused: {why}", file=sys.stderr, flush=True)
    return {name: t for name, t in requested_at.items() if name not in refused}


def stop_all(hub: HubProcess, names: list[str], watch: ReadyWatch, timeout: float) -> None:
    with ThreadPoolExecutor(min(64, len(names))) as pool:
        list(
            pool.map(
                lambda name: hub.api(
                    "DELETE", f"/users/{BENCH_USER}/servers/{name}", {"remove": True}
                ),
                names,
            )
        )
    wait_for(lambda: not hub.servers(), timeout, "every server to stop", every=2)


def measure(
    hub: HubProcess,
    names: list[str],
    options: dict,
    job_id_of: Any,
    calls_log: Path,
    pids: dict[str, int],
    settings: Settings,
    poll_interval: float,
) -> dict:
    """The same measurements for either hub; job_id_of(server state) gives the Slurm job."""
    n = len(names)
    status, answer = hub.api("POST", f"/users/{BENCH_USER}")
    assert status in (201, 409), answer
    rss_idle = {what: memory_kib(pid)["VmRSS"] for what, pid in pids.items()}
    watch = ReadyWatch(hub)
    watch.start()
    result: dict = {"n": n, "poll_interval": poll_interval, "rss_kib_idle": rss_idle}
    try:
        burst_started = time.time()
        requested_at = spawn_all(hub, names, options)
        started_cap = min(len(requested_at), settings.max_running)
        try:
            wait_for(
                lambda: len(watch.ready_at) >= started_cap, 180 + 2 * n, "servers ready", every=1
            )
        except AssertionError as error:  # measured as it is: the servers that did start
            print(f"bench: {error}; {len(watch.ready_at)} ready", file=sys.stderr, flush=True)
        burst_ended = time.time()
        result["ready"] = len(watch.ready_at)
        result["refused"] = n - len(requested_at)
        result["start_burst"] = {
            "seconds": round(burst_ended - burst_started, 2),
            "calls": counting.by_tool(counting.read_calls(calls_log, burst_started, burst_ended)),
        }

        cpu_before = {what: cpu_times(pid) for what, pid in pids.items()}
        started = time.time()
        time.sleep(settings.steady_seconds)
        ended = time.time()
        calls = counting.read_calls(calls_log, started, ended)
        result["steady"] = {
            "seconds": round(ended - started, 2),
            "calls": counting.by_tool(calls),
            "status_queries": sum(1 for c in calls if c.tool == "squeue"),
            "cpu_fraction": {
                what: (cpu_times(pid).own - cpu_before[what].own) / (ended - started)
                for what, pid in pids.items()
            },
        }
        result["rss_kib_steady"] = {what: memory_kib(pid)["VmRSS"] for what, pid in pids.items()}

        ready = sorted(watch.ready_at)
        job_ids = {name: job_id_of(watch.states[name]) for name in ready}
        result["job_ids"] = sorted(j for j in job_ids.values() if j)
        result["job_pss_kib"] = jobs_memory_kib(result["job_ids"])
        start_latency = {
            job: start - submit
            for job, (submit, start) in wait_for_accounting(result["job_ids"]).items()
        }
        spawn_to_ready = {name: watch.ready_at[name] - requested_at[name] for name in ready}
        result["spawn_to_ready"] = list(spawn_to_ready.values())
        result["scheduler_start"] = list(start_latency.values())
        result["overhead_to_ready"] = [
            spawn_to_ready[name] - start_latency[job_ids[name]]
            for name in ready
            if job_ids[name] in start_latency
        ]

        # A job cancelled from outside, until the hub no longer lists its server.
        sample = random.sample(ready, min(settings.cancel_sample, len(ready)))
        cancelled_at: dict[str, float] = {}
        for name in sample:
            time.sleep(random.uniform(0, 2 * poll_interval / max(1, len(sample))))
            cancelled_at[name] = time.time()
            subprocess.run(["/usr/bin/scancel", job_ids[name]], check=True)
        wait_for(
            lambda: all(name in watch.gone_at for name in sample),
            6 * poll_interval,
            "the hub to notice the cancelled jobs",
        )
        result["state_change_to_hub"] = [watch.gone_at[n] - cancelled_at[n] for n in sample]
        result["hwm_kib"] = {what: memory_kib(pid)["VmHWM"] for what, pid in pids.items()}
    finally:
        teardown_started = time.time()
        stop_all(hub, names, watch, 120 + n)
        watch.stopping.set()
        result["teardown"] = {
            "seconds": round(time.time() - teardown_started, 2),
            "calls": counting.by_tool(counting.read_calls(calls_log, teardown_started)),
        }
    return result


def run_ours(kubeconfig: Path, settings: Settings, n: int) -> dict:
    """Our spawner in our hub (dev/jupyterhub_config.py), the operator beside it."""
    bin_directory = settings.state / "bin-ours-hub"
    calls_log = counting.install_wrappers(bin_directory)
    core, custom = api_clients(kubeconfig)
    suffix = uuid.uuid4().hex[:6]
    cluster, namespace = f"bench-hub-{n}-{suffix}", f"bench-hub-{n}-{suffix}"
    core.create_namespace({"metadata": {"name": namespace}})
    create_cluster(custom, cluster, cluster_spec(settings, bin_directory))
    operator = OperatorProcess(
        kubeconfig,
        settings.operator_port,
        settings.state / "logs",
        name=f"operator-hub-{n}",
        python=settings.operator_python,
    )
    operator.start()
    hub = HubProcess(
        settings.state / "hub-ours",
        settings.ours_hub_port,
        REPO / ".venv",
        REPO / "bench/hub_ours_config.py",
        {
            "KUBECONFIG": kubeconfig,
            "NAMESPACE": namespace,
            "OPERATOR_PORT": settings.operator_port,
            "OPERATOR_SERVICE_TOKEN": secrets.token_hex(16),
            # The config names the culler's token; no culler runs (IDLE_CULL_TIMEOUT 0).
            "IDLE_CULLER_TOKEN": secrets.token_hex(16),
            "SWEEPER_TOKEN": secrets.token_hex(16),
        },
    )
    notebooks = NotebookWatch(custom, namespace)
    notebooks.start()
    try:
        hub.start()
        result = measure(
            hub,
            [f"s{i:04d}" for i in range(n)],
            {"cluster": cluster, "profile": "bench"},
            lambda state: notebooks.job_ids.get(state.get("notebook", "").partition("/")[2]),
            calls_log,
            {"hub": hub.pid, "operator": operator.pid},
            settings,
            settings.poll_interval,
        )
    finally:
        hub.stop()
        notebooks.stop()
        # What the hub left behind (none if every stop deleted its BatchNotebook) goes too, so
        # that the cluster can go.
        left = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "batchnotebooks")
        left_behind = [
            item["metadata"]["name"]
            for item in left["items"]
            if not item["metadata"].get("deletionTimestamp")  # not merely being deleted
        ]
        for name in left_behind:
            delete_notebook(core, custom, namespace, name)
        try:
            delete_cluster(custom, cluster)
            wait_for(lambda: not cluster_exists(custom, cluster), 60, f"{cluster} to go")
        finally:
            operator.stop()
            core.delete_namespace(namespace)
    return {"side": "ours-hub", **result, "notebooks_left_behind": left_behind}


def run_batchspawner(settings: Settings, n: int) -> dict:
    run(REPO / "bench/setup-batchspawner.sh")
    bin_directory = settings.state / "bin-batchspawner"
    calls_log = counting.install_wrappers(bin_directory)
    # The same stand-in server ours runs; batchspawner-singleuser runs it as a script file.
    stand_in = settings.state / "stand-in-server.py"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    hub = HubProcess(
        settings.state / "hub-batchspawner",
        settings.batchspawner_hub_port,
        BATCHSPAWNER_VENV,
        REPO / "bench/hub_batchspawner_config.py",
        {
            "BENCH_BIN": bin_directory,
            "BATCHSPAWNER_VENV": BATCHSPAWNER_VENV,
            "PARTITION": PARTITION,
            "STAND_IN": stand_in,
        },
    )
    result: dict = {}
    try:
        hub.start()
        result = measure(
            hub,
            [f"s{i:04d}" for i in range(n)],
            {},
            lambda state: state.get("job_id"),
            calls_log,
            {"hub": hub.pid},
            settings,
            30.0,  # JupyterHub's Spawner.poll_interval, which batchspawner keeps
        )
    finally:
        hub.stop()
        # Jobs the stopped hub left running (a spawn that never got its port is not cancelled):
        # counted, then cancelled, so that they do not hold the partition's slots.
        left = run(
            "squeue",
            "-h",
            f"--partition={PARTITION}",
            f"--user={BENCH_USER}",
            "--name=spawner-jupyterhub",
            "-o",
            "%i",
        ).stdout.split()
        result["jobs_left_behind"] = left
        if left:
            run("scancel", *left)
        # batchspawner's job script writes its log into the user's home.
        for job_id in [*result.get("job_ids", []), *left]:
            Path(f"~{BENCH_USER}/jupyterhub_slurmspawner_{job_id}.log").expanduser().unlink(
                missing_ok=True
            )
    return {"side": "batchspawner", **result}
