"""What every transport shares: a command's result, the interface, and two helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    async def run(
        self, argv: list[str], *, user: str | None = None, stdin: str | None = None
    ) -> CommandResult:
        """Run argv (as `user` when given, with `stdin` on standard input); raise
        SchedulerUnavailable when the command cannot be run or does not answer in time."""
        ...

    async def close(self) -> None: ...


def with_bin_directory(argv: list[str], directory: str | None) -> list[str]:
    """Sites that keep the scheduler's tools off the default PATH (sudo resets it) name the
    directory once; bare command names are looked up there."""
    if not directory or not argv or "/" in argv[0]:
        return argv
    return [f"{directory.rstrip('/')}/{argv[0]}", *argv[1:]]


def operator_namespace() -> str:
    """Where the operator's own Secrets (SSH keys, JWT keys) live unless a reference says."""
    return os.environ.get("BATCHNOTEBOOK_NAMESPACE", "default")
