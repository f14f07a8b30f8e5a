"""What the handlers ask of one BatchCluster's scheduler, however it is reached, and how many
notebooks may ask at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable

from batchnotebook_api import accounts

from ..model import Availability, JobStatus
from ..schedulers import Scheduler

DEFAULT_PARALLEL_NOTEBOOK_COMMANDS = 8
RESERVED_CHANNELS = 2  # of a transport's channels, kept for the poll's own commands


def notebook_turns(spec: dict, channels: int | None = None) -> int:
    """How many notebooks' own commands (a submission or a cancellation, with their lookups) run
    at once on a cluster. Each holds one transport channel at a time, so where channels are few
    (SSH) some stay free for the poll, which never takes a turn."""
    turns = spec.get("parallelNotebookCommands", DEFAULT_PARALLEL_NOTEBOOK_COMMANDS)
    if channels is not None:
        turns = min(turns, channels - RESERVED_CHANNELS)
    return max(1, turns)


class SchedulerClient(ABC):
    """What the handlers ask of a cluster, however it is reached. A handler working on one
    notebook takes one of `turns` first: a lecture starting or ending together then reaches
    the scheduler a few commands at a time, not hundreds at once."""

    name: str
    spec: dict
    scheduler: Scheduler
    turns: asyncio.Semaphore
    #: Whether the job reads the server's environment from a file submit() stages (envfile.py),
    #: rather than getting it from the scheduler.
    environment_in_file = False

    @abstractmethod
    async def submit(
        self, script: str, user: str, *, environment: dict[str, str] | None = None, uid: str = ""
    ) -> str:
        """Submit as `user`, with the server's `environment` (its tokens) for notebook `uid`
        given to the job beside the script, never in it; return the job id."""

    @abstractmethod
    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        """Every job named by `tags` in one request, by job id: any user may give a job one of
        our tags, so a job is only ever known by the id recorded at its submission."""

    async def accounting(
        self, *, job_ids: Iterable[str] = (), tags: Iterable[str] = ()
    ) -> list[JobStatus]:
        """What accounting remembers of jobs the queue forgot, by id or by tag."""
        ids, names = sorted(set(job_ids)), sorted(set(tags))
        if not ids and not names:
            return []
        return await self._accounting(ids, names)

    @abstractmethod
    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
        """accounting() for some ids or tags, sorted, without repeats."""

    @abstractmethod
    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        """Cancel as `user`."""

    @abstractmethod
    async def version(self) -> str:
        """The scheduler's version."""

    @property
    def api_version(self) -> str:
        """The version of the scheduler's API this client speaks, where it has one to choose
        (slurmrestd's OpenAPI plugins): "" for commands."""
        return ""

    @abstractmethod
    async def availability(self) -> Availability:
        """Every partition's resources and every user's pending jobs in start order, in a fixed
        number of requests however many notebooks there are. Raises SchedulerUnavailable."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def discard_environment(self, uid: str, user: str) -> None:
        """Delete what submit() staged for notebook `uid` if the job never read it (best effort).
        Nothing to do where the scheduler keeps the environment with the job."""
        return None

    async def log_tail(self, path: str, user: str, lines: int = 20) -> str:
        """The last `lines` of a file the user can read, "" if it cannot be read. A client that
        reaches the scheduler only through its API has no way to read files."""
        return ""

    async def check_account(self, user: str) -> None:
        """AccountRefused unless `user` may run notebooks here: the cluster's userMapping policy
        (a client that can look accounts up checks the uid too)."""
        accounts.check(self.spec, user)

    async def find(
        self, tag: str, owner: str, created: dt.datetime | None = None
    ) -> JobStatus | None:
        """A notebook's job known only by its tag (no id recorded: a crash came between the
        submit and the status write), wherever the scheduler still knows it (queue or accounting):
        only a job `owner` submitted after `created` counts (JobStatus.may_be_of)."""
        queued = [j for j in (await self.query([tag])).values() if j.may_be_of(tag, owner, created)]
        if queued:
            return queued[-1]
        in_accounting = [
            job for job in await self.accounting(tags=[tag]) if job.may_be_of(tag, owner, created)
        ]
        return in_accounting[-1] if in_accounting else None

    async def job(self, job_id: str, tag: str, owner: str) -> JobStatus | None:
        """The job recorded for a notebook, by its id, wherever the scheduler still knows it; a job
        under that id owned by someone else is not ours (ids wrap around after years)."""
        found = (await self.jobs([job_id], [tag])).get(job_id)
        return found if found is not None and found.owned_by(owner) else None

    async def jobs(self, job_ids: Iterable[str], tags: Iterable[str]) -> dict[str, JobStatus]:
        """Jobs by the ids recorded for them (named by `tags`), wherever the scheduler still knows
        them: the queue, then accounting for those it forgot; one request each, however many.
        Whoever owns them: the caller checks that (JobStatus.owned_by)."""
        wanted = set(job_ids)
        found = {i: j for i, j in (await self.query(tags, wanted)).items() if i in wanted}
        if forgotten := wanted - found.keys():
            for job in await self.accounting(job_ids=forgotten):
                if job.job_id in forgotten:
                    found[job.job_id] = job  # a job's later record wins, as in its listing
        return found
