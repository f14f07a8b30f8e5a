"""The part of a fake scheduler client that no test of the queue needs: no submission, no
version, no availability snapshot, nothing to close."""

from __future__ import annotations

from batchnotebook_operator.clients import SchedulerClient
from batchnotebook_operator.model import Availability


class QueueOnlyClient(SchedulerClient):
    async def submit(self, script, user, *, environment=None, uid="") -> str:  # type: ignore[no-untyped-def]
        raise AssertionError("nothing is submitted here")

    async def version(self) -> str:
        return "test"

    async def availability(self) -> Availability:
        raise AssertionError("no snapshot here")

    async def close(self) -> None:
        pass
