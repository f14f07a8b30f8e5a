"""What every scheduler backend shares. A backend is mostly data: commands, patterns, parsers."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar

from jinja2.nativetypes import NativeEnvironment

from ..errors import SchedulerUnavailable, SubmissionRefused
from ..model import JobState, JobStatus, PartitionLoad, QueuedJob
from ..transports import CommandResult

_commands = NativeEnvironment(autoescape=False)

#: A backend's argv templates by command name ("submit", "query", ...).
Commands = Mapping[str, tuple[str, ...]]


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


def integer(text: str) -> int | None:
    """A whole number as a scheduler prints it; anything else ("", "-", "n/a") is none."""
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def shell_exit_code(status: int | None) -> int | None:
    """A shell-style exit code (128 + signal for a killed job) from an exit status that PBS, and
    Moab over it, print as 256 + signal for a job killed by a signal."""
    if status is None:
        return None
    return 128 + status - 256 if status > 256 else status


def count(value: object) -> int:
    """A count as a scheduler prints it, a number or its digits; anything else ("-", "", None)
    counts none."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    return int(text) if text.isdigit() else 0


def total(row: Mapping[str, object], names: Iterable[str]) -> int:
    """The sum of a row's counts under these names (jobs queued, held, waiting...)."""
    return sum(count(row.get(name)) for name in names)


def epoch(value: object) -> dt.datetime | None:
    """A time printed as epoch seconds; 0 means "not set"."""
    seconds = count(value)
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


def table(stdout: str) -> list[dict[str, str]]:
    """The rows of a whitespace-aligned table (qstat -Q, bqueues, bhosts) by its header's column
    names; a rule of dashes under the header is no row, fields past the header's are dropped."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    return [
        dict(zip(header, row, strict=False))
        for row in lines[1:]
        if len(row) >= len(header) and not row[0].startswith("-")
    ]


def xml_text(element: ElementTree.Element, tag: str) -> str:
    return (element.findtext(tag) or "").strip()


def queued_jobs(jobs: Iterable[tuple[str, str, JobState | None]]) -> list[QueuedJob]:
    """The pending and running ones of (job id, queue, state) in the scheduler's order, for a
    scheduler whose job runs in one queue."""
    return [
        QueuedJob(job_id, (queue,), state is JobState.PENDING)
        for job_id, queue, state in jobs
        if state in (JobState.PENDING, JobState.RUNNING)
    ]


class Scheduler(ABC):
    """A batch scheduler's dialect. Subclasses fill in the class variables and the parsers."""

    name: ClassVar[str]
    #: argv templates; an argument that renders to a list becomes several, an empty one none.
    #: The availability snapshot runs "partitions" (every partition), "nodes" (every node's
    #: resources, for a scheduler whose partition listing lacks them) and "all_jobs" (every
    #: user's pending and running jobs) where a backend has them; without "partitions" the
    #: snapshot reports nothing.
    commands: ClassVar[Commands]
    #: stderr patterns that mean the scheduler did not answer (as opposed to refused).
    unavailable_patterns: ClassVar[tuple[str, ...]]
    #: stderr patterns that mean there is no accounting to ask: an answer, "nothing known".
    no_accounting_patterns: ClassVar[tuple[str, ...]] = ()

    #: Raw states of a job stopped where it runs (mapped to PENDING): suspended, not requeued.
    suspended_states: ClassVar[frozenset[str]] = frozenset()

    #: Longest job name the scheduler keeps (older PBS and Torque: 15); None: no limit.
    job_name_length: ClassVar[int | None] = None

    #: What the version command prints before the version on its first line, cut in this order.
    version_prefixes: ClassVar[tuple[str, ...]] = ()

    def job_name(self, uid: str) -> str:
        """The tag every job carries, derived from its BatchNotebook's uid: the operator finds
        the job again by it after any restart."""
        if self.job_name_length is None:
            return f"bnb-{uid}"
        return f"bnb{uid.replace('-', '')}"[: self.job_name_length]

    def __init__(self, overrides: Mapping[str, Sequence[str]] | None = None) -> None:
        # spec.commands replaces a command's whole argv.
        self.command_templates: dict[str, Sequence[str]] = {**self.commands, **(overrides or {})}

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

    def parse_accounting(self, stdout: str) -> Iterable[JobStatus]:
        """Every job in the accounting command's output; by default it prints what the query
        prints (the same command asked about other jobs)."""
        return self.parse_query(stdout)

    def parse_version(self, stdout: str) -> str:
        text = stdout.strip().splitlines()[0] if stdout.strip() else ""
        for prefix in self.version_prefixes:
            text = text.removeprefix(prefix).strip()
        return text

    def parse_partitions(self, stdout: str, nodes: str = "") -> list[PartitionLoad]:
        """Every partition (queue) in the "partitions" command's output, with the "nodes"
        command's output where the backend has one."""
        return []

    def parse_all_jobs(self, stdout: str) -> list[QueuedJob]:
        """Every user's pending and running jobs in the "all_jobs" command's output, the pending
        ones in the order the scheduler would start them."""
        return []
