"""`batchnotebook doctor`: every check an admin would otherwise do by hand, one line each."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
from dataclasses import dataclass

import aiohttp

from batchnotebook_api import CLUSTERS, GROUP, VERSION
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import profile_resources, resolve
from batchnotebook_api.status import ConditionType
from batchnotebook_api.times import now

from ..backlog import entries_of
from ..clients import make_client
from ..kube import Kube
from ..render import HEREDOC_END, callback_problem
from .script import PLACEHOLDER_UID, SAMPLE_USER, sample_script, scheduler_of
from .status import duration, parse_time

CALLBACK_TIMEOUT_SECONDS = 10
# A poll older than this many intervals (and at least a minute) means nobody is polling.
STALE_POLLS = 3
PENDING_SHOWN = 3  # of a cluster's pending cancels, named in its line


class Level(enum.StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    level: Level
    cluster: str
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.level:<4} {self.cluster}: {self.what}: {self.detail}"


async def check_connection(name: str, spec: dict, kube: Kube) -> Check:
    """The version command through the operator's own client and transport."""
    transport = spec.get("connection", {}).get("type", "local")
    what = f"scheduler ({spec['scheduler']} over {transport})"
    client = make_client(name, spec, kube)
    try:
        version = await client.version()
    except Exception as error:  # a diagnosis reports every failure, whatever its kind
        return Check(
            Level.FAIL,
            name,
            what,
            f"no answer: {error}. Check spec.connection, spec.commands and binDirectory; "
            "run this where the operator runs (it needs the operator's Secrets)",
        )
    finally:
        await client.close()
    api = f", API {client.api_version}" if client.api_version else ""
    return Check(Level.OK, name, what, f"answers, version {version}{api}")


def check_polling(name: str, spec: dict, status: dict, at: dt.datetime) -> Check:
    """What the operator last wrote: the SchedulerReachable condition and when it polled."""
    conditions = status.get("conditions", [])
    reachable = next(
        (c for c in conditions if c["type"] == ConditionType.SCHEDULER_REACHABLE), None
    )
    last_poll = status.get("lastPollTime")
    if reachable is None or not last_poll:
        return Check(
            Level.WARN, name, "operator", "has not polled this cluster yet: is the operator up?"
        )
    age = (at - parse_time(last_poll)).total_seconds()
    interval = spec.get("pollIntervalSeconds", 10)
    if reachable["status"] != "True":
        return Check(
            Level.FAIL,
            name,
            "operator",
            f"its last poll ({duration(age)} ago) got no answer: {reachable.get('message', '')}",
        )
    if age > max(STALE_POLLS * interval, 60):
        return Check(
            Level.WARN,
            name,
            "operator",
            f"last poll {duration(age)} ago, one every {interval}s expected: is the operator up?",
        )
    return Check(Level.OK, name, "operator", f"polls; the scheduler answered {duration(age)} ago")


def check_pending_cancels(name: str, status: dict, at: dt.datetime) -> list[Check]:
    """The jobs of deleted notebooks the scheduler has not yet confirmed ended, if any: the
    operator cancels them as soon as it answers."""
    pending = entries_of(status)
    if not pending:
        return []
    oldest = min(parse_time(entry.since) for entry in pending)
    shown = "; ".join(entry.describe() for entry in pending[:PENDING_SHOWN])
    more = f" and {len(pending) - PENDING_SHOWN} more" if len(pending) > PENDING_SHOWN else ""
    return [
        Check(
            Level.WARN,
            name,
            "pending cancels",
            f"{len(pending)} jobs of deleted notebooks wait to be cancelled, the oldest for "
            f"{duration((at - oldest).total_seconds())}: {shown}{more}",
        )
    ]


def check_profile(name: str, spec: dict, profile: dict) -> Check:
    """The profile's defaults within its limits, and its script rendered for a sample user."""
    what = f"profile {profile.get('name', '?')}"
    try:
        resolve(profile, {})
    except InvalidOptions as error:
        return Check(Level.FAIL, name, what, f"its defaults break its limits: {error}")
    most_nodes = profile.get("limits", {}).get("maxNodes", 1)
    try:
        profile_resources(spec, profile, (), {"nodes": most_nodes})
    except InvalidOptions as error:
        return Check(Level.FAIL, name, what, f"its maxNodes cannot be used here: {error}")
    if callback_problem(spec):  # the callbackURL check says so; the template is checked here
        spec = {**spec, "callbackURL": "https://callback.invalid"}
    try:
        script = sample_script(name, spec, profile["name"], {}, SAMPLE_USER, "default")
    except InvalidOptions as error:
        return Check(Level.FAIL, name, what, f"{error}; fix spec.jobTemplate")
    tag = scheduler_of(name, spec).job_name(PLACEHOLDER_UID)
    missing = [
        problem
        for present, problem in (
            (script.startswith("#!"), "a first line #! (schedulers refuse scripts without one)"),
            (tag in script, "{{ job_name }} (the operator finds its jobs by that name)"),
            (HEREDOC_END in script, "{{ launcher }} (without it Jupyter never starts)"),
        )
        if not present
    ]
    if missing:
        return Check(Level.FAIL, name, what, f"the job template lacks {'; '.join(missing)}")
    return Check(Level.OK, name, what, "defaults within limits, template renders")


async def check_callback(name: str, spec: dict) -> Check:
    """The report server jobs POST their port to answers its health route, over https unless
    the cluster accepts plain http."""
    what = "callbackURL"
    if problem := callback_problem(spec):
        return Check(Level.FAIL, name, what, f"{problem}; every notebook would fail to start")
    url = f"{spec['callbackURL'].rstrip('/')}/healthz"
    timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as answer:
            code, text = answer.status, await answer.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as error:
        return Check(
            Level.FAIL,
            name,
            what,
            f"{url} does not answer ({error or type(error).__name__}): jobs cannot report their "
            "port. Point spec.callbackURL at the operator's report server",
        )
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if code != 200 or not isinstance(body, dict) or body.get("ok") is not True:
        return Check(
            Level.FAIL,
            name,
            what,
            f"{url} answered HTTP {code} {text[:80]!r}, not the operator's report server "
            '({"ok": true}): jobs cannot report their port there',
        )
    plain = url.lower().startswith("http:")
    allowed = " (plain http: allowed by spec.allowInsecureCallback)" if plain else ""
    return Check(
        Level.OK, name, what, f"{url} answers (from here; compute nodes must reach it too){allowed}"
    )


async def check_cluster(name: str, cluster: dict | None, kube: Kube) -> list[Check]:
    if cluster is None:
        return [Check(Level.FAIL, name, "cluster", "there is no BatchCluster of that name")]
    spec, status = cluster["spec"], cluster.get("status", {})
    connection, callback = await asyncio.gather(
        check_connection(name, spec, kube), check_callback(name, spec)
    )
    profiles = [check_profile(name, spec, profile) for profile in spec.get("profiles", [])]
    at = now()
    pending = check_pending_cancels(name, status, at)
    return [connection, check_polling(name, spec, status, at), *pending, *profiles, callback]


async def clusters_named(kube: Kube, names: list[str]) -> dict[str, dict | None]:
    """The named clusters (None for those that do not exist), or every cluster."""
    listed = await kube.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTERS)
    by_name = {item["metadata"]["name"]: item for item in listed["items"]}
    return {name: by_name.get(name) for name in names} if names else by_name


async def doctor_command(kube: Kube, names: list[str]) -> int:
    clusters = await clusters_named(kube, names)
    if not clusters:
        print("FAIL there is no BatchCluster: create one (see dev/clusters/ for examples)")
        return 1
    results = await asyncio.gather(
        *(check_cluster(name, cluster, kube) for name, cluster in clusters.items())
    )
    checks = [check for result in results for check in result]
    for check in checks:
        print(check.line())
    failed = sum(check.level is Level.FAIL for check in checks)
    warned = sum(check.level is Level.WARN for check in checks)
    print(f"{len(checks)} checks: {failed} FAIL, {warned} WARN")
    return 1 if failed else 0
