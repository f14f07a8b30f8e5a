"""A burst of notebooks reaches the scheduler a few at a time; the poll never waits behind it."""

import asyncio

from batchnotebook_operator.clients.base import notebook_turns
from batchnotebook_operator.clients.commandline import CommandLineClient
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


async def test_notebooks_take_turns_and_the_poll_does_not_wait():
    spec = {"scheduler": "slurm", "parallelNotebookCommands": 3, "connection": {"type": "local"}}
    client = CommandLineClient("turns", spec)
    client.transport = scheduler = SlowScheduler()

    async def submit() -> str:  # as the create handler does
        async with client.turns:
            return await client.submit("#!/bin/sh\n", "alice")

    burst = [asyncio.create_task(submit()) for _ in range(20)]
    await asyncio.sleep(0.1)
    assert scheduler.running == 3  # the other 17 wait their turn
    # The poll's query runs at once although every turn is taken.
    assert await asyncio.wait_for(client.query(["bnb-x"]), 1) == {}

    scheduler.release.set()
    job_ids = await asyncio.gather(*burst)
    assert sorted(job_ids, key=int) == [str(i) for i in range(1, 21)]
    assert scheduler.most == 3


def test_over_ssh_some_channels_stay_free_for_the_poll():
    assert notebook_turns({}) == 8
    assert notebook_turns({"parallelNotebookCommands": 64}, channels=8) == 6
    assert notebook_turns({"parallelNotebookCommands": 1}, channels=2) == 1
