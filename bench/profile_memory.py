"""Where the operator's memory per notebook goes: the operator in this process under tracemalloc,
N notebooks created as in the benchmark, and the allocations still held once they are all Ready
(and again after a collection), grouped by the source line that made them.

`python -m bench.profile_memory --n 100` (its own API server in .bench/, as bench.run's)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import threading
import time
import tracemalloc
import uuid

from tests.integration.stack import wait_for

from . import counting
from .common import BENCH_USER, Settings
from .kube import NotebookWatch, api_clients, create_notebook, delete_notebook
from .ours import cluster_spec, create_cluster, delete_cluster
from .procstat import memory_kib
from .run import start_control_plane, stop_control_plane


def run_operator(stop: threading.Event, port: int) -> threading.Thread:
    import kopf
    from batchnotebook_operator import handlers  # noqa: F401 - registers the handlers

    os.environ["BATCHNOTEBOOK_LISTEN"] = f"127.0.0.1:{port}"
    os.environ["BATCHNOTEBOOK_URL_PREFIX"] = "/services/batchnotebook"

    def serve() -> None:
        asyncio.run(
            kopf.operator(
                clusterwide=True,
                standalone=True,
                liveness_endpoint=f"http://127.0.0.1:{port + 2}/healthz",
                stop_flag=stop,
            )
        )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    settings = Settings()
    kubeconfig = start_control_plane(settings)
    os.environ["KUBECONFIG"] = str(kubeconfig)
    stop = threading.Event()
    operator: threading.Thread | None = None
    try:
        core, custom = api_clients(kubeconfig)
        bin_directory = settings.state / "bin-profile"
        counting.install_wrappers(bin_directory)
        name = f"profile-{uuid.uuid4().hex[:6]}"
        core.create_namespace({"metadata": {"name": name}})
        create_cluster(custom, name, cluster_spec(settings, bin_directory))
        tracemalloc.start(12)
        operator = run_operator(stop, settings.operator_port)
        time.sleep(2 * settings.poll_interval)
        gc.collect()
        before, rss_before = tracemalloc.take_snapshot(), memory_kib(os.getpid())["VmRSS"]
        watch = NotebookWatch(custom, name)
        watch.start()
        names = [f"nb-{i:04d}" for i in range(args.n)]
        for notebook in names:
            create_notebook(core, custom, name, notebook, name, BENCH_USER)
        wait_for(lambda: watch.count({"Ready"}) >= args.n, 600, "all Ready", every=1)
        time.sleep(2 * settings.poll_interval)
        gc.collect()
        after, rss_after = tracemalloc.take_snapshot(), memory_kib(os.getpid())["VmRSS"]
        print(f"RSS {rss_before} → {rss_after} KiB: {(rss_after - rss_before) / args.n:.0f} KiB/nb")
        differences = after.compare_to(before, "traceback")
        held = sum(d.size_diff for d in differences)
        print(f"traced allocations held: {held / 1024:.0f} KiB, {held / 1024 / args.n:.1f} KiB/nb")
        for difference in differences[: args.top]:
            print(f"\n{difference.size_diff / 1024:8.0f} KiB  {difference.count_diff:+d} blocks")
            for line in difference.traceback.format()[-8:]:
                print("   ", line)
        for notebook in names:
            delete_notebook(core, custom, name, notebook)
        wait_for(lambda: watch.gone >= set(names), 300, "the notebooks to go", every=1)
        watch.stop()
        delete_cluster(custom, name)
        time.sleep(3)
    finally:
        stop.set()
        if operator is not None:
            operator.join(30)
        stop_control_plane(settings)


if __name__ == "__main__":
    main()
