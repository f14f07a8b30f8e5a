"""What every scheduler backend shares. A backend is mostly data: commands, patterns, parsers."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar

from jinja2.nativetypes import NativeEnvironment

from ..errors import SchedulerUnavailable, SubmissionRefused
from ..model import JobStatus, PartitionLoad, QueuedJob
from ..transports import CommandResult

_commands = NativeEnvironment(autoescape=False)


def first_exec_host(text: str) -> str:
    """The first host of an execution-host list in any scheduler's notation: Slurm `node[01-04]`,
    LSF `host:host` and `2*host`, Torque `host/1+host/2`, PBS Pro `(host:ncpus=2)` or
    `host/2*1`, Grid Engine `all.q@host`, HTCondor `slot1@host`."""
    text = text.strip().strip("()")
    if not text:
        return ""
    first = re.split(r"[\s+:,]", text, maxsplit=1)[0]
    first = first.rsplit("@", 1)[-1]  # queue@host, slot@host
    first = first.split("/", 1)[0]  # host/1, host/2*1
    first = first.split("*", 1)[-1]  # 2*host
    bracket = re.match(r"^([^\[]*)\[(\d+)", first)  # node[01-04,07] -> node01
    return bracket[1] + bracket[2] if bracket else first


class Scheduler(ABC):
    """A batch scheduler's dialect. Subclasses fill in the class variables and the parsers."""

    name: ClassVar[str]
    #: argv templates; an argument that renders to a list becomes several, an empty one none.
    #: The availability snapshot runs "partitions" (every partition), "nodes" (every node's
    #: resources, for a scheduler whose partition listing lacks them) and "all_jobs" (every
    #: user's pending and running jobs) where a backend has them; without "partitions" the
    #: snapshot reports nothing.
    commands: ClassVar[dict[str, list[str]]]
    #: stderr patterns that mean the scheduler did not answer (as opposed to refused).
    unavailable_patterns: ClassVar[tuple[str, ...]]
    #: stderr patterns that mean there is no accounting to ask: an answer, "nothing known".
    no_accounting_patterns: ClassVar[tuple[str, ...]] = ()

    #: Raw states of a job stopped where it runs (mapped to PENDING): suspended, not requeued.
    suspended_states: ClassVar[frozenset[str]] = frozenset()

    #: Longest job name the scheduler keeps (older PBS and Torque: 15); None: no limit.
    job_name_length: ClassVar[int | None] = None

    def job_name(self, uid: str) -> str:
        """The tag every job carries, derived from its BatchNotebook's uid: the operator finds
        the job again by it after any restart."""
        if self.job_name_length is None:
            return f"bnb-{uid}"
        return f"bnb{uid.replace('-', '')}"[: self.job_name_length]

    def __init__(self, overrides: dict[str, list[str]] | None = None) -> None:
        self.command_templates = {**self.commands, **(overrides or {})}

    @classmethod
    def default_template(cls) -> str:
        return (
            resources.files("batchnotebook_operator") / "templates" / f"{cls.name}.sh.j2"
        ).read_text()

    def argv(self, command: str, **context: Any) -> list[str]:
        argv: list[str] = []
        for template in self.command_templates[command]:
            value = _commands.from_string(template).render(**context)
            if isinstance(value, list | tuple):
                argv.extend(str(v) for v in value)
            elif value not in (None, ""):
                argv.append(str(value))
        return argv

    def marked(self, job: JobStatus) -> JobStatus:
        """The job with `suspended` set from this scheduler's raw state (a copy only for the few
        that are: every round marks every job)."""
        return replace(job, suspended=True) if self.is_suspended(job.raw_state) else job

    def is_suspended(self, raw_state: str) -> bool:
        return raw_state in self.suspended_states

    def is_unavailable(self, stderr: str) -> bool:
        return any(re.search(p, stderr, re.IGNORECASE) for p in self.unavailable_patterns)

    def has_no_accounting(self, result: CommandResult) -> bool:
        return result.returncode != 0 and any(
            re.search(p, result.stderr, re.IGNORECASE) for p in self.no_accounting_patterns
        )

    def check(self, result: CommandResult, *, refusal: bool = False) -> str:
        """Return stdout of a command that succeeded; otherwise say what its failure means."""
        if result.returncode == 0:
            return result.stdout
        message = (
            result.stderr.strip()
            or result.stdout.strip()
            or f"{result.argv[0]} exited with {result.returncode}"
        )
        if refusal and not self.is_unavailable(message):
            raise SubmissionRefused(message)
        raise SchedulerUnavailable(message)

    # Parsers: stdout of the scheduler's own commands → the common model.
    @abstractmethod
    def parse_submit(self, stdout: str) -> str:
        """The job id from the submit command's output."""

    @abstractmethod
    def parse_query(self, stdout: str) -> Iterable[JobStatus]:
        """Every job in the batched status query's output."""

    @abstractmethod
    def parse_accounting(self, stdout: str) -> Iterable[JobStatus]:
        """Every job in the accounting command's output."""

    def parse_version(self, stdout: str) -> str:
        return stdout.strip().splitlines()[0] if stdout.strip() else ""

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        """Every partition (queue) in the "partitions" command's output, with the "nodes"
        command's output where the backend has one."""
        return []

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        """Every user's pending and running jobs in the "all_jobs" command's output, the pending
        ones in the order the scheduler would start them."""
        return []
