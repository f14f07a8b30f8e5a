"""A scheduler's command-line tools, run through a transport (local, SSH): every backend's way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from batchnotebook_api import accounts

from .. import envfile, metrics
from ..errors import SchedulerUnavailable, SubmissionRefused
from ..kube import Kube
from ..model import Availability, JobStatus, availability
from ..schedulers import BACKENDS, Scheduler
from ..transports import CommandResult, Transport, make_transport, with_bin_directory
from .base import SchedulerClient, notebook_turns

log = logging.getLogger(__name__)


class CommandLineClient(SchedulerClient):
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
        with metrics.scheduler_command(self.name, command) as outcome:
            result = await self.transport.run(argv, user=user, stdin=stdin)
            outcome.ok = result.returncode == 0
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

    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
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
        if uid is not None:  # always: check_uid refuses an account with none
            self.uids[user] = uid

    async def version(self) -> str:
        result = await self._run("version")
        return self.scheduler.parse_version(self.scheduler.check(result))

    async def availability(self) -> Availability:
        """The backend's "partitions", "nodes" and "all_jobs" commands (those it has), as the
        service account."""
        if "partitions" not in self.scheduler.command_templates:
            return availability([], None)  # the backend says why it reports no partitions
        answers = {}
        for command in ("partitions", "nodes", "all_jobs"):
            if command in self.scheduler.command_templates:
                answers[command] = self.scheduler.check(await self._run(command))
        partitions = self.scheduler.parse_partitions(
            answers["partitions"], answers.get("nodes", "")
        )
        jobs = self.scheduler.parse_all_jobs(answers["all_jobs"]) if "all_jobs" in answers else None
        return availability(partitions, jobs)
