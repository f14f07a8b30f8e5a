"""The local command line: scheduler tools run as subprocesses where the operator runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal

from ..errors import SchedulerUnavailable
from .base import CommandResult

log = logging.getLogger(__name__)


class LocalTransport:
    """Runs commands as subprocesses (no shell) where the operator runs."""

    def __init__(
        self,
        run_as: list[str],
        timeout: float = 30,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.run_as = run_as
        self.timeout = timeout
        self.environment = {**os.environ, **(environment or {})}

    def command_for(self, argv: list[str], user: str | None) -> list[str]:
        if user is None:
            return list(argv)
        return [part.replace("{user}", user) for part in self.run_as] + list(argv)

    @staticmethod
    def working_directory(user: str | None) -> str | None:
        """A user's commands run in their home, as on a login node (job output lands there)."""
        if user is None:
            return None
        try:
            return pwd.getpwnam(user).pw_dir
        except KeyError:
            return "/"

    async def close(self) -> None:
        """Nothing to close: every command is its own process."""

    async def run(
        self, argv: list[str], *, user: str | None = None, stdin: str | None = None
    ) -> CommandResult:
        command = self.command_for(argv, user)
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment,
                cwd=self.working_directory(user),
                start_new_session=True,
            )
        except OSError as error:
            raise SchedulerUnavailable(f"cannot run {command[0]}: {error}") from error
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), self.timeout
            )
        except TimeoutError:
            # The whole process group: sudo's child must not outlive the timeout.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise SchedulerUnavailable(
                f"{argv[0]} did not answer within {self.timeout:g} s"
            ) from None
        return CommandResult(
            tuple(command),
            process.returncode or 0,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
