"""The campaign's invariants over what the API server and the scheduler said, without I/O and
without the clock (`now` is an argument): the runner reads both sides (notebooks first, then the
queue) and hands each reading here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

TAG_PREFIX = "bnb-"
# Slurm's states of a job that has ended (squeue --states=all keeps them for MinJobAge).
ENDED_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
     "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"}
)  # fmt: skip
ENDED_PHASES = frozenset({"Completed", "Failed", "Cancelled"})


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    user: str
    state: str

    @property
    def live(self) -> bool:
        return self.state not in ENDED_STATES

    @property
    def uid(self) -> str | None:
        """The notebook uid of a job tagged by us (bnb-<uid>)."""
        return self.name[len(TAG_PREFIX) :] if self.name.startswith(TAG_PREFIX) else None


@dataclass(frozen=True)
class Notebook:
    name: str
    uid: str
    unix_user: str
    phase: str
    job_id: str | None = None
    deleting_since: float | None = None  # the deletionTimestamp, epoch seconds
    message: str = ""  # status.message: why it failed or ended
    cluster: str = ""
    server: str | None = None  # the hub's server name: the hub made it, the hub stops it


@dataclass(frozen=True)
class Reading:
    """The notebooks as listed, then the campaign's jobs as squeue listed them just after (None:
    the scheduler did not answer)."""

    notebooks: tuple[Notebook, ...]
    jobs: tuple[Job, ...] | None


@dataclass(frozen=True)
class Violation:
    invariant: str
    notebook: str  # the notebook's name, or the job's tag for an orphan
    detail: str
    at: float


@dataclass
class Checker:
    """Checks readings as they come. `quiet_since` is when the system was last healthy after a
    fault (None while a fault is in force): the bounds that need a working system count from
    there."""

    poll_interval: float
    terminating_bound: float
    orphan_seen: dict[str, float] = field(default_factory=dict)  # job id → first seen orphaned
    reported: set[tuple[str, str]] = field(default_factory=set)

    def check(self, reading: Reading, now: float, quiet_since: float | None) -> list[Violation]:
        found = [*self._notebook_checks(reading, now, quiet_since)]
        if reading.jobs is not None:
            found += [*self._job_checks(reading.notebooks, reading.jobs, now, quiet_since)]
        # Each (invariant, subject) once: a violation lasting many readings is one finding.
        fresh = [v for v in found if (v.invariant, v.notebook) not in self.reported]
        self.reported |= {(v.invariant, v.notebook) for v in fresh}
        return fresh

    def _notebook_checks(
        self, reading: Reading, now: float, quiet_since: float | None
    ) -> Iterable[Violation]:
        if quiet_since is None:
            return
        for notebook in reading.notebooks:
            if notebook.deleting_since is None:
                continue
            waited = now - max(notebook.deleting_since, quiet_since)
            if waited > self.terminating_bound:
                yield Violation(
                    "stuck-terminating",
                    notebook.name,
                    f"Terminating {now - notebook.deleting_since:.0f} s, {waited:.0f} s of them "
                    f"with the system healthy (bound {self.terminating_bound:g} s)",
                    now,
                )

    def _job_checks(
        self,
        notebooks: tuple[Notebook, ...],
        jobs: tuple[Job, ...],
        now: float,
        quiet_since: float | None,
    ) -> Iterable[Violation]:
        by_uid = {notebook.uid: notebook for notebook in notebooks}
        live: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if job.uid is not None and job.live:
                live[job.uid].append(job)
        for uid, its_jobs in live.items():
            notebook = by_uid.get(uid)
            subject = notebook.name if notebook else f"{TAG_PREFIX}{uid}"
            if len(its_jobs) > 1:
                ids = ", ".join(f"{j.job_id} ({j.state})" for j in its_jobs)
                yield Violation("one-job", subject, f"{len(its_jobs)} live jobs: {ids}", now)
            for job in its_jobs:
                if notebook is not None and job.user != notebook.unix_user:
                    yield Violation(
                        "right-user",
                        subject,
                        f"job {job.job_id} runs as {job.user}, not {notebook.unix_user}",
                        now,
                    )
        yield from self._orphans(by_uid, live, now, quiet_since)
        running = {job.job_id for job in jobs if job.state == "RUNNING"}
        for notebook in notebooks:
            # The notebook was read first: it said ended before the queue said running.
            if notebook.phase in ENDED_PHASES and notebook.job_id in running:
                yield Violation(
                    "ended-while-running",
                    notebook.name,
                    f"phase {notebook.phase} while job {notebook.job_id} is RUNNING",
                    now,
                )

    def _orphans(
        self,
        by_uid: dict[str, Notebook],
        live: dict[str, list[Job]],
        now: float,
        quiet_since: float | None,
    ) -> Iterable[Violation]:
        # COMPLETING: ended, the node still cleaning up; the operator lets the notebook go then.
        orphans = {
            job.job_id: job
            for uid, its_jobs in live.items()
            if uid not in by_uid
            for job in its_jobs
            if job.state != "COMPLETING"
        }
        # A job is an orphan once it has stayed without its notebook for two poll intervals,
        # counted from when it was first seen so and from the end of the last fault; a notebook
        # created between the two reads shows in the next reading.
        self.orphan_seen = {i: self.orphan_seen.get(i, now) for i in orphans}
        if quiet_since is None:
            return
        grace = 2 * self.poll_interval
        for job_id, job in orphans.items():
            if now - max(self.orphan_seen[job_id], quiet_since) >= grace:
                yield Violation(
                    "no-orphans",
                    job.name,
                    f"job {job.job_id} ({job.state}, {job.user}) has no notebook",
                    now,
                )


def settled(
    notebooks: Iterable[Notebook],
    cancelled_outside: set[str],
    now: float,
    may_end: frozenset[str] = frozenset(),
) -> list[Violation]:
    """After the faults stopped and the bound passed: every notebook is Ready, but those whose
    job was cancelled outside, which must have ended (the hub deletes them then), and those whose
    walltime may have ended (`may_end`), which are Ready or ended."""
    found = []
    for notebook in notebooks:
        if notebook.deleting_since is not None:
            continue  # stuck-terminating judges those
        if notebook.name in cancelled_outside:
            if notebook.phase not in ENDED_PHASES:
                found.append(
                    Violation(
                        "ready-or-gone",
                        notebook.name,
                        f"its job was cancelled outside, yet the phase is {notebook.phase}",
                        now,
                    )
                )
        elif notebook.phase != "Ready" and not (
            notebook.name in may_end and notebook.phase in ENDED_PHASES
        ):
            found.append(Violation("ready-or-gone", notebook.name, f"phase {notebook.phase}", now))
    return found
