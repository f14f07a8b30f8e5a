"""One BatchCluster's scheduler, reached through its transport: the operations the handlers need."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from batchnotebook_api import accounts

from . import envfile
from .errors import SchedulerUnavailable, SubmissionRefused
from .kube import Kube
from .model import Availability, JobStatus, availability
from .schedulers import BACKENDS, Scheduler
from .transports import CommandResult, Transport, make_transport, with_bin_directory

log = logging.getLogger(__name__)
DEFAULT_PARALLEL_NOTEBOOK_COMMANDS = 8
RESERVED_CHANNELS = 2  # of a transport's channels, kept for the poll's own commands

COMMANDS = Counter(
    "batchnotebook_scheduler_commands_total",
    "Scheduler commands run, by outcome",
    ["cluster", "command", "outcome"],
)
LATENCY = Histogram(
    "batchnotebook_scheduler_command_seconds",
    "Scheduler command latency",
    ["cluster", "command"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


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

    @abstractmethod
    async def accounting(
        self, *, job_ids: Iterable[str] = (), tags: Iterable[str] = ()
    ) -> list[JobStatus]:
        """What accounting remembers of jobs the queue forgot."""

    @abstractmethod
    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        """Cancel as `user`."""

    @abstractmethod
    async def version(self) -> str:
        """The scheduler's version."""

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
        remembered = [
            job for job in await self.accounting(tags=[tag]) if job.may_be_of(tag, owner, created)
        ]
        return remembered[-1] if remembered else None

    async def job(self, job_id: str, tag: str, owner: str) -> JobStatus | None:
        """The job recorded for a notebook, by its id, wherever the scheduler still knows it; a job
        under that id owned by someone else is not ours (ids wrap around after years)."""
        found = (await self.query([tag], [job_id])).get(job_id)
        if found is None:
            remembered = [j for j in await self.accounting(job_ids=[job_id]) if j.job_id == job_id]
            found = remembered[-1] if remembered else None
        return found if found is not None and found.owned_by(owner) else None


def make_client(name: str, spec: dict, kube: Kube | None = None) -> SchedulerClient:
    """The client a BatchCluster's spec asks for: its scheduler's commands over its transport,
    or slurmrestd's API."""
    if spec.get("connection", {}).get("type") == "slurmrest":
        from .slurmrest import SlurmRestClient

        return SlurmRestClient(name, spec, kube)
    return ClusterClient(name, spec, kube)


class ClusterClient(SchedulerClient):
    """A scheduler's command-line tools, reached through a transport."""

    environment_in_file = True

    def __init__(self, name: str, spec: dict, kube: Kube | None = None) -> None:
        self.name = name
        self.spec = spec
        connection = spec.get("connection", {})
        self.scheduler: Scheduler = BACKENDS[spec["scheduler"]](spec.get("commands"))
        self.bin_directory = connection.get("binDirectory")
        self.transport: Transport = make_transport(connection, kube)
        self.turns = asyncio.Semaphore(
            notebook_turns(spec, getattr(self.transport, "channels", None))
        )
        self.uids: dict[str, int] = {}  # accounts found allowed: a uid does not change

    async def close(self) -> None:
        await self.transport.close()

    async def _run(
        self, command: str, *, user: str | None = None, stdin: str | None = None, **context
    ) -> CommandResult:
        # A command that starts a shell (HTCondor's submit) finds the tools by bin_directory.
        argv = with_bin_directory(
            self.scheduler.argv(command, bin_directory=self.bin_directory or "", **context),
            self.bin_directory,
        )
        started = time.monotonic()
        try:
            result = await self.transport.run(argv, user=user, stdin=stdin)
        except SchedulerUnavailable:
            COMMANDS.labels(self.name, command, "timeout").inc()
            raise
        finally:
            LATENCY.labels(self.name, command).observe(time.monotonic() - started)
        COMMANDS.labels(self.name, command, "ok" if result.returncode == 0 else "error").inc()
        if result.returncode:
            log.info(
                "cluster %s: %s exited %d: %s",
                self.name,
                argv[0],
                result.returncode,
                result.stderr.strip()[:500],
            )
        return result

    async def submit(
        self, script: str, user: str, *, environment: dict[str, str] | None = None, uid: str = ""
    ) -> str:
        """Submit as `user`; the script goes on stdin, never on the command line. The server's
        environment goes first, on stdin too, into the user's private file that the script
        names (envfile.py): schedulers keep scripts where others may read them."""
        if environment is not None:
            staged = await self.transport.run(
                envfile.write_argv(uid), user=user, stdin=envfile.content(environment)
            )
            if staged.returncode:
                raise SubmissionRefused(
                    f"cannot store the notebook's environment in {user}'s home: "
                    f"{staged.stderr.strip()[:300]}"
                )
        try:
            result = await self._run("submit", user=user, stdin=script)
            return self.scheduler.parse_submit(self.scheduler.check(result, refusal=True))
        except SubmissionRefused:
            if environment is not None:
                await self.discard_environment(uid, user)
            raise

    async def discard_environment(self, uid: str, user: str) -> None:
        with contextlib.suppress(SchedulerUnavailable):
            result = await self.transport.run(envfile.remove_argv(uid), user=user)
            if result.returncode:
                log.info("cluster %s: cannot delete %s's environment file %s", self.name, user, uid)

    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        """State of every job named by `tags` (ids given where known), in one command, by tag.
        Raises SchedulerUnavailable if the scheduler is silent."""
        tags, job_ids = sorted(set(tags)), sorted(set(job_ids))
        if not tags:
            return {}
        result = await self._run("query", tags=tags, job_ids=job_ids)
        parsed = self.scheduler.parse_query(self.scheduler.check(result))
        return {job.job_id: self.scheduler.marked(job) for job in parsed}

    async def accounting(
        self, *, job_ids: Iterable[str] = (), tags: Iterable[str] = ()
    ) -> list[JobStatus]:
        """What accounting remembers of jobs the queue forgot."""
        job_ids, tags = sorted(set(job_ids)), sorted(set(tags))
        if not job_ids and not tags:
            return []
        result = await self._run("accounting", job_ids=job_ids, tags=tags)
        if self.scheduler.has_no_accounting(result):
            return []
        parsed = self.scheduler.parse_accounting(self.scheduler.check(result))
        return [self.scheduler.marked(job) for job in parsed]

    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        result = await self._run("cancel", user=user, job_ids=sorted(set(job_ids)))
        self.scheduler.check(result)

    async def log_tail(self, path: str, user: str, lines: int = 20) -> str:
        """The last `lines` of `path` (relative paths start in the user's home), read as the user
        with one argv, never a shell string: a missing or unreadable log gives ""."""
        result = await self.transport.run(["tail", "-n", str(lines), "--", path], user=user)
        return result.stdout if result.returncode == 0 else ""

    async def check_account(self, user: str) -> None:
        """The policy, then the account's uid on the cluster (`id -u`, one argv, as the service
        account): an account that does not exist or is a system one (uid < minUid) is refused
        before anything runs as it."""
        await super().check_account(user)
        if user in self.uids:
            return
        result = await self.transport.run(["id", "-u", "--", user])
        answer = result.stdout.strip()
        uid = int(answer) if result.returncode == 0 and answer.isdigit() else None
        accounts.check_uid(self.spec, user, uid)
        self.uids[user] = uid

    async def version(self) -> str:
        result = await self._run("version")
        return self.scheduler.parse_version(self.scheduler.check(result))

    async def availability(self) -> Availability:
        """The backend's "partitions", "nodes" and "all_jobs" commands (those it has), as the
        service account."""
        if "partitions" not in self.scheduler.command_templates:
            return availability([], None)  # the backend says why it reports no partitions
        said = {}
        for command in ("partitions", "nodes", "all_jobs"):
            if command in self.scheduler.command_templates:
                said[command] = self.scheduler.check(await self._run(command))
        partitions = self.scheduler.parse_partitions(said["partitions"], said.get("nodes", ""))
        jobs = self.scheduler.parse_all_jobs(said["all_jobs"]) if "all_jobs" in said else None
        return availability(partitions, jobs)
