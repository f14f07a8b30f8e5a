"""What a standby replica serves while another one leads: the report routes, forwarded to the
active replica (a Service sends a job's report to any ready replica), health and readiness (a
standby is healthy and ready: it must neither be restarted nor block a rollout), and metrics.
kopf does not run here: it starts, and serves all this itself, once this replica leads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .handlers.report_auth import DNS_NAME, bounded_body, error, report_app

log = logging.getLogger(__name__)
FORWARD_TIMEOUT_SECONDS = 30
# What a standby that starts to lead gives its in-flight requests before it lets the ports go:
# its Lease is being renewed meanwhile, kopf waits for the ports.
STOP_GRACE_SECONDS = 2.0


def forwarder(
    leader_url: Callable[[], str], session: aiohttp.ClientSession, own_url: str = ""
) -> web.RouteTableDef:
    """The report routes, each passed on as it came (body and token) to the leader's own. Never
    to `own_url`: a replica restarted at its address finds its dead predecessor in the Lease
    until it takes over, and forwarding there would send each report round to itself, holding
    every request until it timed out (found by the chaos campaign)."""
    routes = web.RouteTableDef()

    async def forward(request: web.Request, suffix: str) -> web.Response:
        raw = await bounded_body(request)
        if isinstance(raw, web.Response):
            return raw
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not (DNS_NAME.match(namespace) and DNS_NAME.match(name)):
            return error(401, "unknown notebook or wrong token")
        url = leader_url()
        if not url or url.rstrip("/") == own_url.rstrip("/"):
            # Between two leaders (or a dead one at our own address): the launcher retries a 503.
            return error(503, "no operator is active just now, try again")
        headers = {
            "Content-Type": request.headers.get("Content-Type", "application/json"),
            "Authorization": request.headers.get("Authorization", ""),
        }
        try:
            async with session.post(
                f"{url.rstrip('/')}/v1/report/{namespace}/{name}{suffix}", data=raw, headers=headers
            ) as answer:
                body = await answer.read()
                return web.Response(
                    status=answer.status, body=body, content_type="application/json"
                )
        except (aiohttp.ClientError, TimeoutError) as failure:
            log.warning("cannot forward a report to the active operator at %s: %s", url, failure)
            return error(503, "the active operator did not answer, try again")

    @routes.post("/v1/report/{namespace}/{name}")
    async def report(request: web.Request) -> web.Response:
        return await forward(request, "")

    @routes.post("/v1/report/{namespace}/{name}/ended")
    async def report_ended(request: web.Request) -> web.Response:
        return await forward(request, "/ended")

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "standby": True})

    return routes


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def readyz(_: web.Request) -> web.Response:
    return web.json_response({"ready": True, "standby": True})


def make_app(prefix: str, routes: web.RouteTableDef) -> web.Application:
    """As handlers/reports.py: the report routes under the public prefix too, the rest not."""
    private = web.RouteTableDef()
    private.get("/metrics")(metrics)
    private.get("/readyz")(readyz)
    return report_app(prefix, routes, private)


def liveness_app(liveness_url: str) -> tuple[web.Application, str, int]:
    """kopf's liveness endpoint, answered by the standby (kopf serves it once this one leads)."""
    parts = urlsplit(liveness_url)
    app = web.Application()

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app.router.add_get(parts.path or "/", alive)
    return app, parts.hostname or "0.0.0.0", parts.port or 80


class Standby:
    """The standby's servers: started while waiting to lead, stopped before kopf takes the ports."""

    def __init__(self, listen: str, prefix: str, liveness_url: str, own_url: str = "") -> None:
        self.listen, self.prefix, self.liveness_url = listen, prefix, liveness_url
        self.own_url = own_url
        self.runners: list[web.AppRunner] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self, leader_url: Callable[[], str]) -> None:
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS)
        self.session = aiohttp.ClientSession(timeout=timeout)
        host, _sep, port = self.listen.rpartition(":")
        apps = [
            (
                make_app(self.prefix, forwarder(leader_url, self.session, self.own_url)),
                host or "0.0.0.0",
                int(port),
            ),
            liveness_app(self.liveness_url),
        ]
        for app, app_host, app_port in apps:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_GRACE_SECONDS)
            await runner.setup()
            self.runners.append(runner)
            await web.TCPSite(runner, app_host, app_port).start()

    async def stop(self) -> None:
        """Lets the ports go at once: forwards in flight are cut first (their jobs get a 503 and
        retry), then the servers stop."""
        if self.session is not None:
            await self.session.close()
            self.session = None
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()
