"""Our side: the operator as a process (no --verbose, as in production) on the benchmark's own
API server, N BatchNotebooks created directly against the API as the spawner creates them."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from devstack.host import OperatorProcess
from tests.integration.stack import JOB_PYTHON, STAND_IN, delete_notebook, wait_for

from . import counting
from .common import (
    BENCH_USER,
    PARTITION,
    Settings,
    jobs_memory_kib,
)
from .kube import (
    GROUP,
    REPORTED,
    TERMINAL,
    VERSION,
    NotebookWatch,
    api_clients,
    apiserver_requests,
    apiserver_seconds,
    create_notebook,
)
from .procstat import cpu_times, machine_cpu_seconds, memory_kib

JOB_STARTED = "bench: job script started at"
JOB_LOG = "/tmp/bnb-bench-{job_id}.log"


def job_script_started(job_id: str) -> float | None:
    """When the job's script began (the prologue's line in its log), epoch seconds."""
    try:
        with open(JOB_LOG.format(job_id=job_id)) as log:
            for line in log:
                if line.startswith(JOB_STARTED):
                    return float(line.split()[-1])
    except (OSError, ValueError):  # no log here, or a line cut short
        pass
    return None


def cluster_spec(settings: Settings, bin_directory: Path) -> dict:
    return {
        "scheduler": "slurm",
        "callbackURL": f"http://127.0.0.1:{settings.operator_port}",
        "allowInsecureCallback": True,  # the report never leaves this machine
        "execHosts": {"allowLoopback": True},  # the jobs run on this machine
        "pollIntervalSeconds": settings.poll_interval,
        "python": JOB_PYTHON,
        "jupyterCommand": [JOB_PYTHON, "-c", STAND_IN],
        "jobOutput": JOB_LOG.format(job_id="%j"),
        # When the job script starts, to the microsecond (sacct gives whole seconds): the end of
        # the scheduler's part of a start.
        "prologue": f'echo "{JOB_STARTED} $EPOCHREALTIME"',
        "connection": {"type": "local", "binDirectory": str(bin_directory)},
        "profiles": [
            {
                "name": "bench",
                "displayName": "Benchmark",
                "description": "1 CPU shared, 8 MB",
                "defaults": {
                    "cpus": 1,
                    "memory": "8M",
                    "walltime": "01:00:00",
                    "partition": PARTITION,
                },
                "limits": {
                    "maxCpus": 1,
                    "maxMemory": "64M",
                    "maxWalltime": "02:00:00",
                    "partitions": [PARTITION],
                    "accounts": ["research"],
                },
            }
        ],
    }


def create_cluster(custom: client.CustomObjectsApi, name: str, spec: dict) -> None:
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "batchclusters",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BatchCluster",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def delete_cluster(custom: client.CustomObjectsApi, name: str) -> None:
    try:
        custom.delete_cluster_custom_object(GROUP, VERSION, "batchclusters", name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def cluster_exists(custom: client.CustomObjectsApi, name: str) -> bool:
    try:
        custom.get_cluster_custom_object(GROUP, VERSION, "batchclusters", name)
        return True
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise


def operator_requests(
    before: Counter, after: Counter, own: Counter | None = None
) -> dict[str, int]:
    """The API server's request counts between two readings, less the benchmark's own."""
    delta = after - before
    if own:
        delta -= own
    for key in [key for key in delta if key[1] == "leases"]:
        del delta[key]  # the API server's own heartbeat, not a client's request
    return {" ".join(p for p in key if p): count for key, count in sorted(delta.items())}


def wait_steady(seconds: float, pid: int, calls_log: Path, kubeconfig: Path) -> dict:
    """Nothing happens for `seconds` but polling: what it costs."""
    started, cpu_before = time.time(), cpu_times(pid)
    requests_before = apiserver_requests(kubeconfig)
    time.sleep(seconds)
    ended, cpu_after = time.time(), cpu_times(pid)
    requests = operator_requests(requests_before, apiserver_requests(kubeconfig))
    calls = counting.read_calls(calls_log, started, ended)
    return {
        "seconds": round(ended - started, 2),
        "cpu_fraction": (cpu_after.own - cpu_before.own) / (ended - started),
        "children_cpu_fraction": (cpu_after.children - cpu_before.children) / (ended - started),
        "calls": counting.by_tool(calls),
        "status_queries": sum(1 for c in calls if c.tool == "squeue" and c.selects == "name"),
        "status_query_times": [
            round(c.time - started, 3) for c in calls if c.tool == "squeue" and c.selects == "name"
        ],
        "max_argv_chars": max((c.argv_chars for c in calls), default=0),
        "api_requests": requests,
    }


def run(kubeconfig: Path, settings: Settings, n: int) -> dict:
    """One measured run of N notebooks; everything it started is gone when it returns."""
    logs = settings.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bin_directory = settings.state / "bin-ours"
    calls_log = counting.install_wrappers(bin_directory)
    core, custom = api_clients(kubeconfig)
    suffix = uuid.uuid4().hex[:6]
    cluster, namespace = f"bench-{n}-{suffix}", f"bench-{n}-{suffix}"
    core.create_namespace({"metadata": {"name": namespace}})
    create_cluster(custom, cluster, cluster_spec(settings, bin_directory))
    operator = OperatorProcess(
        kubeconfig,
        settings.operator_port,
        logs,
        name=f"operator-{n}",
        python=settings.operator_python,
    )
    operator.start()
    watch = NotebookWatch(custom, namespace)
    watch.start()
    names = [f"nb-{i:04d}" for i in range(n)]
    result: dict = {"side": "ours", "n": n, "poll_interval": settings.poll_interval}
    try:
        time.sleep(2 * settings.poll_interval)  # the cluster's first rounds, with no notebooks
        result["rss_kib_idle"] = memory_kib(operator.pid)["VmRSS"]

        # The start burst: every notebook requested at once.
        burst_started = time.time()
        requests_before = apiserver_requests(kubeconfig)
        # Who had the CPUs while the notebooks started: the operator, or the rest of the machine
        # (API server, Slurm, hundreds of jobs starting at once).
        operator_cpu_before, machine_cpu_before = cpu_times(operator.pid), machine_cpu_seconds()
        api_seconds_before = apiserver_seconds(kubeconfig)
        created_at: dict[str, float] = {}

        def create(name: str) -> None:
            created_at[name] = time.time()
            create_notebook(core, custom, namespace, name, cluster, BENCH_USER)

        with ThreadPoolExecutor(settings.parallel_requests) as pool:
            list(pool.map(create, names))
        started_cap = min(n, settings.max_running)
        try:
            # The burst ends when the running cap is Ready and every notebook is submitted (those
            # above the cap wait in the queue); only then is the steady state measured.
            wait_for(
                lambda: (
                    watch.count({"Ready"} | TERMINAL) >= started_cap
                    and watch.count({"Queued", "Starting", "Ready"} | TERMINAL) >= n
                ),
                120 + 2 * n,
                f"{started_cap} notebooks to be Ready and all {n} submitted",
                every=1,
            )
        except AssertionError as error:  # measured as it is: the notebooks that did start
            print(f"bench: {error}", file=sys.stderr, flush=True)
        time.sleep(settings.poll_interval)  # the last transitions' writes
        burst_ended = time.time()
        machine_busy, machine_all = (
            after - before
            for after, before in zip(machine_cpu_seconds(), machine_cpu_before, strict=True)
        )
        operator_busy = cpu_times(operator.pid).own - operator_cpu_before.own
        burst_calls = counting.read_calls(calls_log, burst_started, burst_ended)
        own_creates = Counter({("POST", "secrets", ""): n, ("POST", "batchnotebooks", ""): n})
        burst_requests = operator_requests(
            requests_before, apiserver_requests(kubeconfig), own_creates
        )
        # How long the operator's writes (status and annotation patches, events) took the API
        # server to answer while the machine was this busy.
        api_seconds = apiserver_seconds(kubeconfig) - api_seconds_before
        api_requests = apiserver_requests(kubeconfig) - requests_before
        writes = [key for key in api_requests if key[0] == "PATCH" or key[:2] == ("POST", "events")]
        write_latency = sum(api_seconds[key] for key in writes) / max(
            1, sum(api_requests[key] for key in writes)
        )
        ready = [name for name in names if watch.first_seen(name, {"Ready"})]
        result["ready"] = len(ready)
        result["failed"] = sum(1 for name in names if watch.first_seen(name, TERMINAL))
        result["start_burst"] = {
            "seconds": round(burst_ended - burst_started, 2),
            "machine_cpu_busy": machine_busy / machine_all,
            "operator_cpu_cores": operator_busy / (burst_ended - burst_started),
            "api_write_seconds": write_latency,
            "calls": counting.by_tool(burst_calls),
            "api_requests": burst_requests,
        }

        # Steady state: all submitted, as many running as the cap lets, nothing changing.
        result["steady"] = wait_steady(settings.steady_seconds, operator.pid, calls_log, kubeconfig)
        result["rss_kib_steady"] = memory_kib(operator.pid)["VmRSS"]
        job_ids = {name: watch.job_ids[name] for name in ready}
        result["job_pss_kib"] = jobs_memory_kib(list(job_ids.values()))

        spawn_to_ready = {
            name: watch.first_seen(name, {"Ready"}) - created_at[name] for name in ready
        }
        result["spawn_to_ready"] = list(spawn_to_ready.values())
        # The scheduler's part of a start, to the microsecond: from the status saying the job
        # was submitted (the operator's part before it) to the job script's first line.
        submitted = {
            name: watch.first_seen(name, {"Queued", "Starting", "Ready"}) for name in ready
        }
        script_started = {
            name: started for name in ready if (started := job_script_started(job_ids[name]))
        }
        # Under load the status says "submitted" late, and a job may start before it does: its
        # scheduler part counts as 0 (how many, in start_before_status).
        scheduler_start = {
            name: max(0.0, script_started[name] - submitted[name]) for name in script_started
        }
        result["start_before_status"] = sum(
            1 for name in script_started if script_started[name] < submitted[name]
        )
        result["create_to_submitted"] = [submitted[name] - created_at[name] for name in ready]
        result["scheduler_start"] = list(scheduler_start.values())
        overhead = {name: spawn_to_ready[name] - scheduler_start[name] for name in scheduler_start}
        result["overhead_to_ready"] = list(overhead.values())
        # Where the rest goes: the job's side (its script's start → the launcher's report seen in
        # the status: launcher and server starting on the node) and the operator's (report →
        # Ready; 0 when the poll had confirmed the host first).
        reported = {name: watch.first_seen(name, {REPORTED}) for name in ready}
        job_start_up = {
            name: reported[name] - script_started[name] for name in script_started if reported[name]
        }
        result["start_to_reported"] = list(job_start_up.values())
        result["reported_to_ready"] = [
            watch.first_seen(name, {"Ready"}) - reported[name] for name in ready if reported[name]
        ]
        # The operator's share: before the scheduler (create → submitted) and after the job
        # reported (report seen → Ready). The job's start-up between them includes the report's
        # own handling (two reads and a write), so this share is a lower bound.
        result["operator_overhead"] = [
            submitted[name] - created_at[name] + watch.first_seen(name, {"Ready"}) - reported[name]
            for name in ready
            if reported[name]
        ]

        # A scheduler state change from outside (scancel as root) until the status says so,
        # the cancels spread over two poll intervals so they fall anywhere in a round.
        sample = random.sample(ready, min(settings.cancel_sample, len(ready)))
        cancelled_at: dict[str, float] = {}
        for name in sample:
            time.sleep(random.uniform(0, 2 * settings.poll_interval / max(1, len(sample))))
            cancelled_at[name] = time.time()
            subprocess.run(["/usr/bin/scancel", job_ids[name]], check=True)
        wait_for(
            lambda: all(watch.first_seen(name, TERMINAL) for name in sample),
            6 * settings.poll_interval,
            "the cancelled notebooks' status",
        )
        result["state_change_to_status"] = [
            watch.first_seen(name, TERMINAL) - cancelled_at[name] for name in sample
        ]
        result["hwm_kib"] = memory_kib(operator.pid)["VmHWM"]
    finally:
        teardown_started = time.time()
        with ThreadPoolExecutor(settings.parallel_requests) as pool:
            list(pool.map(lambda name: delete_notebook(core, custom, namespace, name), names))
        try:
            wait_for(lambda: watch.gone >= set(names), 120 + n, "the notebooks to go", every=1)
            result["teardown"] = {
                "seconds": round(time.time() - teardown_started, 2),
                "calls": counting.by_tool(counting.read_calls(calls_log, teardown_started)),
            }
        finally:
            watch.stop()
            try:
                delete_cluster(custom, cluster)
                # Gone before the operator stops: the next run's operator would poll it.
                wait_for(lambda: not cluster_exists(custom, cluster), 60, f"{cluster} to go")
            finally:
                operator.stop()
                core.delete_namespace(namespace)
    return result
