"""`batchnotebook status`: every notebook with what its scheduler says of its job now, asked in
one batched query per cluster (the operator's own `query`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass

from batchnotebook_api import CLUSTERS, GROUP, NOTEBOOKS, VERSION
from batchnotebook_api.status import Phase
from batchnotebook_api.times import now

from ..clients import make_client
from ..errors import SchedulerUnavailable
from ..kube import Kube
from ..model import JobStatus

log = logging.getLogger(__name__)
COLUMNS = (
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("USER", "user"),
    ("CLUSTER", "cluster"),
    ("PROFILE", "profile"),
    ("PHASE", "phase"),
    ("JOBID", "job_id"),
    ("SCHEDULER", "scheduler_state"),
    ("HOST:PORT", "address"),
    ("AGE", "age"),
    ("ENDS", "ends_at"),
)
# What the scheduler column says when the scheduler's answer is missing or surprising.
NOT_FOUND = "NOT FOUND!"
NO_ANSWER = "no answer"
NO_CLUSTER = "no cluster"


@dataclass
class Row:
    namespace: str
    name: str
    user: str
    cluster: str
    profile: str
    phase: str
    job_id: str
    scheduler_state: str
    address: str
    age: str
    ends_at: str
    #: An active notebook whose job the scheduler does not know.
    unknown_to_scheduler: bool = False


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def duration(seconds: float) -> str:
    """Like kubectl's AGE: 45s, 12m, 5h, 3d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def scheduler_word(notebook: dict, answer: dict[str, JobStatus] | str) -> tuple[str, bool]:
    """The scheduler column and whether the job is flagged unknown. `answer` is the cluster's
    query result by job id, or why there is none. A job under the notebook's id owned by someone
    else is not its job (a job is never known by its name: anyone can choose it)."""
    status = notebook.get("status", {})
    if not status.get("jobName"):
        return "", False
    if isinstance(answer, str):
        return answer, False
    job = answer.get(status.get("jobId", ""))
    if job is not None and job.owned_by(notebook["spec"].get("unixUser", "")):
        return f"{job.raw_state} ({job.reason})" if job.reason else job.raw_state, False
    # An ended notebook's job may rightly be forgotten; an active one's must not be.
    active = not Phase(status.get("phase", "Pending")).terminal
    return (NOT_FOUND, True) if active else ("", False)


def row(notebook: dict, answer: dict[str, JobStatus] | str, at: dt.datetime) -> Row:
    meta, spec, status = notebook["metadata"], notebook["spec"], notebook.get("status", {})
    host, port = status.get("execHost", ""), status.get("port")
    state, unknown = scheduler_word(notebook, answer)
    return Row(
        namespace=meta["namespace"],
        name=meta["name"],
        user=spec.get("hubUser", ""),
        cluster=spec.get("clusterName", ""),
        profile=spec.get("profile", ""),
        phase=status.get("phase", ""),
        job_id=status.get("jobId", ""),
        scheduler_state=state,
        address=f"{host}:{port}" if host and port else host,
        age=duration((at - parse_time(meta["creationTimestamp"])).total_seconds()),
        ends_at=status.get("endsAt", ""),
        unknown_to_scheduler=unknown,
    )


def table(rows: list[Row]) -> str:
    cells = [[header for header, _ in COLUMNS]]
    cells += [[str(getattr(r, field)) or "-" for _, field in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in cells
    )


async def ask_scheduler(
    kube: Kube, name: str, cluster: dict | None, notebooks: list[dict]
) -> dict[str, JobStatus] | str:
    """One query for every job of the cluster's notebooks, by job id; or why there is none."""
    if cluster is None:
        return NO_CLUSTER
    statuses = [n.get("status", {}) for n in notebooks]
    tags = [s["jobName"] for s in statuses if s.get("jobName")]
    job_ids = [s["jobId"] for s in statuses if s.get("jobId")]
    client = make_client(name, cluster["spec"], kube)
    try:
        return await client.query(tags, job_ids)
    except SchedulerUnavailable as error:
        log.warning("cluster %s did not answer: %s", name, error)
        return NO_ANSWER
    finally:
        await client.close()


async def status_rows(kube: Kube, namespace: str | None) -> list[Row]:
    if namespace is None:
        listed = await kube.custom.list_cluster_custom_object(GROUP, VERSION, NOTEBOOKS)
    else:
        listed = await kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, NOTEBOOKS
        )
    notebooks = sorted(
        listed["items"], key=lambda n: (n["metadata"]["namespace"], n["metadata"]["name"])
    )
    by_cluster: dict[str, list[dict]] = defaultdict(list)
    for notebook in notebooks:
        by_cluster[notebook["spec"].get("clusterName", "")].append(notebook)
    clusters = {
        c["metadata"]["name"]: c
        for c in (await kube.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTERS))["items"]
    }
    answers = dict(
        zip(
            by_cluster,
            await asyncio.gather(
                *(
                    ask_scheduler(kube, name, clusters.get(name), nbs)
                    for name, nbs in by_cluster.items()
                )
            ),
            strict=True,
        )
    )
    at = now()
    return [row(n, answers[n["spec"].get("clusterName", "")], at) for n in notebooks]


async def status_command(kube: Kube, args: argparse.Namespace) -> int:
    rows = await status_rows(kube, None if args.all_namespaces else args.namespace)
    if args.output == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
    elif rows:
        print(table(rows), end="")
    else:
        print("No BatchNotebooks found.")
    return 0
