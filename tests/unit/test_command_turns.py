"""A burst of submissions runs a few at a time, and the poll's query never waits behind it."""

import asyncio

from batchnotebook_operator.client import ClusterClient
from batchnotebook_operator.transports import CommandResult


class SlowScheduler:
    """A transport whose submissions take a while; it counts how many run at once."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.submitted = 0
        self.release = asyncio.Event()

    async def run(self, argv, *, user=None, stdin=None) -> CommandResult:
        if argv[0].endswith("sbatch"):
            self.running += 1
            self.most = max(self.most, self.running)
            await self.release.wait()
            self.running -= 1
            self.submitted += 1
            return CommandResult(tuple(argv), 0, f"{self.submitted}\n", "")
        return CommandResult(tuple(argv), 0, "", "")  # squeue: no jobs

    async def close(self) -> None:
        pass


async def test_submissions_take_turns_and_the_query_does_not_wait():
    spec = {"scheduler": "slurm", "connection": {"type": "local", "parallelUserCommands": 3}}
    client = ClusterClient("turns", spec)
    client.transport = scheduler = SlowScheduler()

    burst = [asyncio.create_task(client.submit("#!/bin/sh\n", "alice")) for _ in range(20)]
    await asyncio.sleep(0.1)
    assert scheduler.running == 3  # the other 17 wait their turn
    # The poll's query runs at once although every turn is taken.
    assert await asyncio.wait_for(client.query(["bnb-x"]), 1) == {}

    scheduler.release.set()
    job_ids = await asyncio.gather(*burst)
    assert sorted(job_ids, key=int) == [str(i) for i in range(1, 21)]
    assert scheduler.most == 3
