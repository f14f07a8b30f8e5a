"""The HTTP endpoints jobs report to, plus /metrics, /healthz and /readyz (only the report
routes and /healthz are also served under the public prefix: see make_app).

A port report has a fixed schema ({"host", "port"}), is authenticated with the notebook's own
report token, and its host must be the one the scheduler says the job runs on (full names after
the cluster's hostRewrite). Nothing else in the body is read, so a job can never set anything but
its port (batchspawner's setattr flaw); the URL is built from the scheduler's host alone, and only
if the cluster's execHosts policy allows it (hosts.py).
An end report (same token, no body read) only brings the cluster's next poll forward: the phase
is still the scheduler's word.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from batchnotebook_api.status import Phase, Reason
from batchnotebook_api.times import now, timestamp

from .. import messages
from ..follow import ready_fields
from ..hosts import check, policy_from_spec, same_host
from ..metrics import observe_status_change
from ..registry import registry
from . import report_auth
from .notebooks import cluster_spec
from .report_auth import authenticated, bounded_body, limited_event, parse_json

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
routes = web.RouteTableDef()  # served under the public prefix too
private_routes = web.RouteTableDef()  # the operator's port only (Prometheus, kubelet)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _parse(body: Any) -> tuple[str, int]:
    if not isinstance(body, dict) or set(body) != {"host", "port"}:
        raise ValueError('the report must be exactly {"host": ..., "port": ...}')
    host, port = body["host"], body["port"]
    if not isinstance(host, str) or not HOSTNAME.match(host):
        raise ValueError("host must be a host name")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("port must be a number from 1 to 65535")
    return host, port


async def _authenticated(request: web.Request) -> dict | web.Response:
    """The notebook a report is about, or the answer to give (report_auth.py: no API call
    until the request has shown the notebook's own token)."""
    return await authenticated(request, time.monotonic())


@routes.post("/v1/report/{namespace}/{name}")
async def report(request: web.Request) -> web.Response:
    raw = await bounded_body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        host, port = _parse(parse_json(raw))
    except ValueError as error:
        return _error(400, str(error))
    notebook = await _authenticated(request)
    if isinstance(notebook, web.Response):
        return notebook
    kube = registry.kube
    namespace, name = notebook["metadata"]["namespace"], notebook["metadata"]["name"]
    status = notebook.get("status", {})
    generation = notebook["metadata"].get("generation")
    spec = cluster_spec(report_auth.targets.clusters, notebook["spec"]["clusterName"])
    if spec is None:
        return _error(409, f"no BatchCluster {notebook['spec']['clusterName']}")
    rules = spec.get("hostRewrite")
    exec_host = status.get("execHost")
    if exec_host and not same_host(exec_host, host, rules):
        message = f"a report claimed host {host}, but the job runs on {exec_host}; ignored"
        await limited_event(notebook, "Warning", "ReportRejected", message)
        return _error(403, message)

    update: dict[str, Any] = {"reportedHost": host, "reportedPort": port}
    if status.get("phase") != Phase.READY.value:
        ready = ready_fields({**status, **update}, generation, now(), rules)
        # Checked again at the moment of Ready: the policy may have changed since the poll.
        refusal = await check(exec_host, policy_from_spec(spec)) if ready else None
        if refusal:
            message = messages.host_refused(status.get("jobId"), exec_host, refusal)
            await limited_event(notebook, "Warning", Reason.HOST_REFUSED, message)
            return _error(403, message)
        update |= ready
    if all(status.get(key) == value for key, value in update.items()):
        # The same report again (a retry, or a flood with the notebook's own token): no write.
        if status.get("phase") == Phase.READY.value:
            return web.json_response({"phase": Phase.READY.value, "url": status.get("url")})
        return web.json_response({"phase": status.get("phase"), "accepted": True}, status=202)
    await kube.patch_notebook_status(namespace, name, update)
    observe_status_change(
        notebook["spec"]["clusterName"],
        notebook["metadata"].get("creationTimestamp"),
        status,
        update,
    )
    if update.get("phase") == Phase.READY.value:
        await kube.event(notebook, "Normal", "Ready", update["message"])
        return web.json_response({"phase": Phase.READY.value, "url": update["url"]})
    # The scheduler has not said where the job runs yet: the next poll checks the host.
    return web.json_response({"phase": status.get("phase"), "accepted": True}, status=202)


@routes.post("/v1/report/{namespace}/{name}/ended")
async def report_ended(request: web.Request) -> web.Response:
    """The job's launcher saw Jupyter exit. Only a hint to ask the scheduler now rather than at
    the next poll: the phase still comes from the scheduler alone."""
    unread = await bounded_body(request)  # ignored, but a large one is refused, not drained
    if isinstance(unread, web.Response):
        return unread
    notebook = await _authenticated(request)
    if isinstance(notebook, web.Response):
        return notebook
    meta = notebook["metadata"]
    if not notebook.get("status", {}).get("endReportedAt"):
        await registry.kube.patch_notebook_status(
            meta["namespace"], meta["name"], {"endReportedAt": timestamp(now())}
        )
    return web.json_response({"accepted": True}, status=202)


@private_routes.get("/metrics")
async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


# Public too: `batchnotebook doctor` checks that callbackURL/healthz reaches the operator through
# the hub. It tells no more than that.
@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": registry.kube is not None})


@private_routes.get("/readyz")
async def readyz(_: web.Request) -> web.Response:
    """Ready once it can take reports: the report server listens and the API client is set up."""
    ready = registry.kube is not None
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def make_app(prefix: str) -> web.Application:
    return report_auth.report_app(prefix, routes, private_routes)


@kopf.on.startup()
async def serve(memo: kopf.Memo, **_: Any) -> None:
    app = make_app(os.environ.get("BATCHNOTEBOOK_URL_PREFIX", ""))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    address = os.environ.get("BATCHNOTEBOOK_LISTEN", "0.0.0.0:8080")
    host, _sep, port = address.rpartition(":")
    try:
        await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    except OSError as error:  # without the endpoint no notebook can become ready: stop here
        await runner.cleanup()
        raise kopf.PermanentError(f"cannot listen on {address}: {error}") from error
    memo.report_server = runner


@kopf.on.cleanup()
async def stop_serving(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "report_server", None) is not None:
        await memo.report_server.cleanup()
