"""Who may report, decided from the operator's own memory: the report endpoint is public.

An unauthenticated request costs no Kubernetes API call. Which notebooks exist comes from a kopf
index (filled from the watch); each notebook's report token is kept as a digest, by uid (a
notebook's token never changes): remembered when the operator reads the Secret to submit the job,
or read once per uid after a restart. Only a request that carries the right token makes the
operator read the notebook itself. Events that bad reports cause are rate-limited per notebook.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import aiohttp
import kopf
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import GROUP, NOTEBOOKS, REPORT_TOKEN_KEY, VERSION
from batchnotebook_api.status import Phase

from ..kube import Kube
from ..notebook_secret import SecretNotOwned, own_secret_data
from ..registry import registry

log = logging.getLogger(__name__)

DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# The largest report the schema allows is {"host": <253 characters>, "port": 65535}, about 290
# bytes; the rest is room for whitespace. A body over this is refused unread and never parsed.
MAX_BODY_BYTES = 1024
# After the Secret could not be read (API server down), the next try for that notebook waits.
SECRET_RETRY_SECONDS = 30.0
# At most one event per notebook and reason in this many seconds, however many bad reports.
EVENT_INTERVAL_SECONDS = 60.0


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


# One answer for a missing notebook and a wrong token: no probing for names.
def unauthorized() -> web.Response:
    return error(401, "unknown notebook or wrong token")


class Target(NamedTuple):
    """What the endpoint knows of a notebook without asking the API server."""

    namespace: str
    name: str
    uid: str
    secret_name: str


# The type: ignore[arg-type] on kopf decorators here: kopf's handler protocols cannot express
# a handler taking a kopf index by name, nor a namespaced resource's `namespace: str`.
# Async, like the other indexes: kopf runs a sync handler in a thread for every event.
@kopf.index(GROUP, VERSION, NOTEBOOKS)  # type: ignore[arg-type]  # namespace: str
async def notebooks_by_name(name: str, namespace: str, uid: str, spec: kopf.Spec, **_: Any) -> dict:
    return {(namespace, name): Target(namespace, name, uid, spec.get("envSecretName", ""))}


class Targets:
    """The live kopf indexes, reachable from the aiohttp routes (kopf hands indexes to handlers
    only): the notebooks by name, whether kopf has listed every notebook yet, and the clusters'
    specs (a report's hostRewrite and execHosts cost no API call either)."""

    def __init__(self) -> None:
        self.index: Mapping[tuple[str, str], Iterable[Target]] = {}
        self.clusters: Mapping[str, Iterable[dict]] = {}
        # Until kopf has listed all notebooks, an unknown name may be one not listed yet.
        self.complete = False

    def find(self, namespace: str, name: str) -> list[Target]:
        found = self.index.get((namespace, name), ())
        # Ghosts: notebooks whose deletion kopf missed (see Registry.gone).
        return [target for target in found if target.uid not in registry.gone]

    def uids(self) -> set[str]:
        return {target.uid for found in self.index.values() for target in found}


targets = Targets()


@kopf.on.startup()  # type: ignore[arg-type]  # takes kopf indexes by name
async def keep_report_index(
    notebooks_by_name: kopf.Index, clusters_by_name: kopf.Index, **_: Any
) -> None:
    # kopf's index objects are live: kopf fills them in place as the watch reports changes.
    targets.index = notebooks_by_name
    targets.clusters = clusters_by_name


# kopf runs resource handlers only once every resource kind is fully indexed, so the first
# call means the index is complete. Filtered out afterwards: no work, no log line per event.
@kopf.on.event(GROUP, VERSION, NOTEBOOKS, when=lambda **_: not targets.complete)
async def notebooks_indexed(**_: Any) -> None:
    targets.complete = True


class TokenUnavailable(Exception):
    """The Secret could not be read just now (not: the Secret has no token)."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ReportTokens:
    """Digests of report tokens by notebook uid."""

    def __init__(self) -> None:
        self._digests: dict[str, bytes | None] = {}  # None: the notebook has no token
        self._retry_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def remember(self, uid: str, token: str | None) -> None:
        self._digests[uid] = digest(token) if token else None
        self._retry_at.pop(uid, None)

    def forget_all_but(self, live: set[str]) -> None:
        for uid in set(self._digests) - live:
            del self._digests[uid]
        for uid in set(self._retry_at) - live:
            del self._retry_at[uid]

    def __len__(self) -> int:
        return len(self._digests)

    async def expected(
        self, uid: str, read: Callable[[], Awaitable[str | None]], now: float
    ) -> bytes | None:
        """The digest of the notebook's token; `read` is called at most once per uid, however
        many requests arrive at the same time (and again only after a failed read)."""
        if uid in self._digests:
            return self._digests[uid]
        lock = self._locks.setdefault(uid, asyncio.Lock())
        try:
            async with lock:
                if uid in self._digests:  # read while this request waited
                    return self._digests[uid]
                if now < self._retry_at.get(uid, 0.0):
                    raise TokenUnavailable("the Secret could not be read a moment ago")
                try:
                    token = await read()
                except (
                    TokenUnavailable,
                    ApiException,
                    aiohttp.ClientError,
                    OSError,
                    TimeoutError,
                ) as failure:
                    self._retry_at[uid] = now + SECRET_RETRY_SECONDS
                    log.warning("cannot read the report token of notebook %s: %s", uid, failure)
                    raise TokenUnavailable(str(failure)) from failure
                self.remember(uid, token)
                return self._digests[uid]
        finally:
            if not lock.locked():
                self._locks.pop(uid, None)


report_tokens = ReportTokens()


async def read_report_token(kube: Kube, target: Target) -> str | None:
    """The one place the report endpoint reads a notebook's Secret, under the own-Secret rule.
    None if the notebook has no token (no Secret of its own, or no token in it): it cannot be
    reported to. TokenUnavailable (or an API error) if it is worth asking again later."""
    notebook = {
        "metadata": {"namespace": target.namespace, "name": target.name, "uid": target.uid},
        "spec": {"envSecretName": target.secret_name},
    }
    try:
        secret = await own_secret_data(kube, notebook)
    except SecretNotOwned as refused:
        if not refused.final:  # the spawner has not added the owner reference yet
            raise TokenUnavailable(str(refused)) from refused
        return None
    except ApiException as failure:
        if failure.status in (403, 404):
            return None
        raise
    return secret.get(REPORT_TOKEN_KEY) or None


async def authenticated(request: web.Request, now: float) -> dict | web.Response:
    """The notebook a report is about, read from the API server only once the request has shown
    that notebook's token; or the answer to give. A notebook that has ended takes no more."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not (token and DNS_NAME.match(namespace) and DNS_NAME.match(name)):
        return unauthorized()
    if not targets.complete:  # 503: the launcher retries
        return error(503, "the operator is starting, try again")
    kube = registry.kube
    offered = digest(token)
    matched = None
    for target in targets.find(namespace, name):
        try:
            expected = await report_tokens.expected(
                target.uid, functools.partial(read_report_token, kube, target), now
            )
        except TokenUnavailable:
            return error(503, "cannot check the token now, try again")
        if expected is not None and hmac.compare_digest(offered, expected):
            matched = target
    if len(report_tokens) > 2 * len(targets.index) + 64:  # notebooks deleted since
        report_tokens.forget_all_but(targets.uids())
    if matched is None:
        return unauthorized()
    notebook = await kube.notebook(namespace, name)
    if notebook is None or notebook["metadata"].get("uid") != matched.uid:
        return unauthorized()  # deleted (or deleted and created again) since it was indexed
    phase = notebook.get("status", {}).get("phase", "Pending")
    if Phase(phase).terminal:
        return error(410, f"the notebook has ended ({phase})")
    return notebook


async def bounded_body(request: web.Request) -> bytes | web.Response:
    """The request's body, or 413 once it is longer than any report can be: the rest is never
    read into memory."""
    too_large = error(413, f"a report is at most {MAX_BODY_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return too_large
    body = bytearray()
    while len(body) <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return too_large


def parse_json(raw: bytes) -> Any:
    """JSON, or ValueError for anything else, including nesting too deep to parse."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as failure:  # ValueError: UnicodeDecodeError, JSON's
        raise ValueError(f"the body is not JSON: {type(failure).__name__}") from failure


class EventLimiter:
    """At most one event per key (notebook uid, reason) in `interval` seconds."""

    def __init__(self, interval: float = EVENT_INTERVAL_SECONDS, keep: int = 10_000) -> None:
        self.interval = interval
        self.keep = keep
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        if len(self._last) > self.keep:  # only recent keys can still refuse anything
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        return True


report_events = EventLimiter()


async def limited_event(notebook: dict, type_: str, reason: str, message: str) -> None:
    """An event caused by a job's report: bad reports may come by the thousand."""
    if report_events.allow((notebook["metadata"].get("uid"), reason), time.monotonic()):
        await registry.kube.event(notebook, type_, reason, message)


def report_app(
    prefix: str, public: web.RouteTableDef, *private: web.RouteTableDef
) -> web.Application:
    """The operator's HTTP app, the leader's or a standby's. Behind the hub's proxy (a JupyterHub
    service) the report routes live under the service prefix too, reachable from the internet:
    metrics and readiness stay on the operator's own port."""
    app = web.Application(client_max_size=4096)
    app.add_routes(public)
    for routes in private:
        app.add_routes(routes)
    prefix = prefix.rstrip("/")
    if prefix:
        under_prefix = web.Application(client_max_size=4096)
        under_prefix.add_routes(public)
        app.add_subapp(prefix, under_prefix)
    return app
