"""The HTTP endpoints jobs report to, plus /metrics, /healthz and /readyz.

A port report has a fixed schema ({"host", "port"}), is authenticated with the notebook's own
report token, and its host must be the one the scheduler says the job runs on. Nothing else in
the body is read, so a job can never set anything but its port (batchspawner's setattr flaw).
An end report (same token, no body read) only brings the cluster's next poll forward: the phase
is still the scheduler's word.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from typing import Any

import kopf
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import REPORT_TOKEN_KEY
from ..follow import ready_fields, short_host
from ..metrics import observe_status_change
from ..model import Phase, timestamp
from ..registry import registry

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
routes = web.RouteTableDef()


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
    """The notebook a report is about, or the answer to give: the report must carry that
    notebook's own token, and a notebook that has ended takes no more reports."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if not (DNS_NAME.match(namespace) and DNS_NAME.match(name)):
        return _error(404, "no such notebook")
    kube = registry.kube
    notebook = await kube.notebook(namespace, name)
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    expected = ""
    if notebook is not None:
        try:
            secret = await kube.secret_data(namespace, notebook["spec"]["envSecretName"])
            expected = secret.get(REPORT_TOKEN_KEY, "")
        except ApiException:
            expected = ""
    # One answer for a missing notebook and a wrong token: no probing for names.
    if not expected or not token or not hmac.compare_digest(token.encode(), expected.encode()):
        return _error(401, "unknown notebook or wrong token")
    phase = notebook.get("status", {}).get("phase", "Pending")
    if Phase(phase).terminal:
        return _error(410, f"the notebook has ended ({phase})")
    return notebook


@routes.post("/v1/report/{namespace}/{name}")
async def report(request: web.Request) -> web.Response:
    try:
        host, port = _parse(await request.json())
    except (ValueError, json.JSONDecodeError) as error:
        return _error(400, str(error))
    notebook = await _authenticated(request)
    if isinstance(notebook, web.Response):
        return notebook
    kube = registry.kube
    namespace, name = notebook["metadata"]["namespace"], notebook["metadata"]["name"]
    status = notebook.get("status", {})
    generation = notebook["metadata"].get("generation")
    exec_host = status.get("execHost")
    if exec_host and short_host(exec_host) != short_host(host):
        message = f"a report claimed host {host}, but the job runs on {exec_host}; ignored"
        await kube.event(notebook, "Warning", "ReportRejected", message)
        return _error(403, message)

    update = {"reportedHost": host, "reportedPort": port}
    if status.get("phase") != Phase.READY.value:
        update |= ready_fields({**status, **update}, generation)
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
    notebook = await _authenticated(request)
    if isinstance(notebook, web.Response):
        return notebook
    meta = notebook["metadata"]
    if not notebook.get("status", {}).get("endReportedAt"):
        await registry.kube.patch_notebook_status(
            meta["namespace"], meta["name"], {"endReportedAt": timestamp()}
        )
    return web.json_response({"accepted": True}, status=202)


@routes.get("/metrics")
async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": registry.kube is not None})


@routes.get("/readyz")
async def readyz(_: web.Request) -> web.Response:
    """Ready once it can take reports: the report server listens and the API client is set up."""
    ready = registry.kube is not None
    return web.json_response({"ready": ready}, status=200 if ready else 503)


@kopf.on.startup()
async def serve(memo: kopf.Memo, **_: Any) -> None:
    app = web.Application(client_max_size=4096)
    app.add_routes(routes)
    # Behind the hub's proxy (a JupyterHub service) the same routes live under the service prefix.
    prefix = os.environ.get("BATCHNOTEBOOK_URL_PREFIX", "").rstrip("/")
    if prefix:
        under_prefix = web.Application(client_max_size=4096)
        under_prefix.add_routes(routes)
        app.add_subapp(prefix, under_prefix)
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
