"""The Lease the operator replicas elect their active one with (election.py decides; this module
reads and writes coordination.k8s.io/v1 Leases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import GROUP

from .election import Election, Record

log = logging.getLogger(__name__)
# What a request to the API server may fail with, besides an answer that says no.
UNANSWERED = (aiohttp.ClientError, OSError, TimeoutError)
URL_ANNOTATION = f"{GROUP}/leader-url"


def micro_time(moment: dt.datetime) -> str:
    """A Lease's MicroTime: always six digits of microseconds (isoformat() drops zeros)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(lease: client.V1Lease) -> Record:
    spec = lease.spec
    return Record(
        holder=spec.holder_identity or "",
        duration=float(spec.lease_duration_seconds or 0),
        version=lease.metadata.resource_version,
        transitions=spec.lease_transitions or 0,
        url=(lease.metadata.annotations or {}).get(URL_ANNOTATION, ""),
    )


class LeaseElector:
    """One replica's side of the election on the Lease `namespace/name`; `url` is where this
    replica takes job reports, for the others to forward them to while it leads."""

    def __init__(
        self,
        leases: client.CoordinationV1Api,
        namespace: str,
        name: str,
        election: Election,
        url: str,
    ) -> None:
        self.leases = leases
        self.namespace, self.name = namespace, name
        self.election, self.url = election, url
        self.acquired: str | None = None  # our acquireTime, kept through renewals

    async def read(self) -> Record | None:
        try:
            return record_of(await self.leases.read_namespaced_lease(self.name, self.namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def body(self, holder: str, transitions: int, version: str | None) -> dict:
        moment = micro_time(dt.datetime.now(dt.UTC))
        if holder != self.election.identity:  # a release
            self.acquired = None
        elif self.acquired is None:
            self.acquired = moment
        metadata: dict = {
            "name": self.name,
            "namespace": self.namespace,
            "annotations": {URL_ANNOTATION: self.url if holder else ""},
        }
        if version is not None:  # the write fails (409) if anyone wrote since this read
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": round(self.election.timing.duration),
                "acquireTime": self.acquired,
                "renewTime": moment,
                "leaseTransitions": transitions,
            },
        }

    async def write(self, holder: str, transitions: int) -> Record | None:
        """The Lease our write made, or None if another write came first (or the API failed)."""
        record = self.election.record
        # A dict, not a V1Lease: the model would send its datetimes without the microseconds
        # that a MicroTime needs.
        body = cast(
            client.V1Lease, self.body(holder, transitions, record.version if record else None)
        )
        try:
            if record is None:
                lease = await self.leases.create_namespaced_lease(self.namespace, body)
            else:
                lease = await self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("cannot write the Lease %s: %s", self.name, error.reason)
            return None
        except UNANSWERED as error:
            log.warning("cannot write the Lease %s: %s", self.name, error)
            return None
        return record_of(lease)

    async def step(self) -> None:
        """Read the Lease; claim it if it is free or expired, renew it if it is ours."""
        try:
            self.election.observe(await self.read(), time.monotonic())
        except (ApiException, *UNANSWERED) as error:
            log.warning("cannot read the Lease %s: %s", self.name, error)
            return
        if not self.election.may_take(time.monotonic()):
            return
        sent = time.monotonic()
        was_leading = self.election.leading(sent)
        written = await self.write(*self.election.claim())
        if written is not None:
            self.election.won(written, sent)
            if not was_leading:
                log.info("leading: %s holds the Lease %s", self.election.identity, self.name)

    async def until_leading(self) -> None:
        """Return once this replica holds the Lease."""
        timing = self.election.timing
        while not self.election.leading(time.monotonic()):
            try:  # a hung request must not keep a standby from its next read
                await asyncio.wait_for(self.step(), timing.duration)
            except TimeoutError:
                log.warning("reading the Lease %s took over %g s", self.name, timing.duration)
            if not self.election.leading(time.monotonic()):
                await asyncio.sleep(timing.retry_period)

    async def keep_leading(self) -> None:
        """Renew the Lease; return when it could not be renewed within the renew deadline (or
        another replica holds it): from then on this replica must not act."""
        retry = self.election.timing.retry_period
        while self.election.leading(time.monotonic()):
            await asyncio.sleep(retry)
            while self.election.leading(time.monotonic()):
                # One hung request must not use up the whole deadline (a connection the network
                # broke can hang while new ones work): each try gets a retry period, the next
                # follows at once, and none may come back after the deadline.
                left = self.election.time_left(time.monotonic())
                try:
                    await asyncio.wait_for(self.step(), max(min(left, retry), 0.001))
                    break
                except TimeoutError:
                    log.warning("a request for the Lease %s hung; asking again", self.name)
        log.warning("could not renew the Lease %s in time", self.name)

    async def release(self) -> None:
        """Give the Lease up (a stopping leader), so that a standby need not wait it out."""
        if not self.election.leading(time.monotonic()):
            return
        if await self.write("", self.election.record.transitions if self.election.record else 0):
            log.info("released the Lease %s", self.name)
