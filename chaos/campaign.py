"""One campaign: the stack up, the workload running, the faults of the timeline one after
another, the invariants checked all along; then the workload stops, every notebook must be Ready
(or ended, if its job was cancelled outside) within the bound, every user stops, and nothing may
be left: no notebook, no job."""

from __future__ import annotations

import datetime as dt
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devstack.processes import wait_until
from tests.integration.stack import REPO, run

from . import faults, results
from .hub import HubSide
from .invariants import Checker, Violation, settled
from .schedule import Plan, command, describe, timeline
from .stack import API_ERRORS, TIMEOUT, Stack
from .workload import Loop, Workload, delete_notebook, read


@dataclass(frozen=True)
class Options:
    plan: Plan
    state: Path
    out: Path
    api_port: int = 37443
    operator_port: int = 38080
    sshd_port: int = 38102
    hub_port: int = 38600  # the proxy's public port; its API on + 1, the hub on + 81
    poll_interval: int = 2
    bound: float = 90.0  # seconds to Ready, or to gone, once the system is healthy again
    warmup: float = 20.0
    tick: float = 2.0  # seconds between two actions of the workload
    max_notebooks: int = 12


@dataclass
class Monitor:
    """Reads and checks once a second (the hub's servers every few); `quiet_since` is None while
    a fault is in force."""

    stack: Stack
    hub: HubSide
    checker: Checker
    quiet_since: float | None = field(default_factory=time.time)
    violations: list[Violation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        reading = read(self.stack)
        if reading is not None:
            self.add(self.checker.check(reading, time.time(), self.quiet_since))

    def check_hub(self) -> None:
        self.add(self.hub.check(time.time(), self.quiet_since))

    def add(self, found: list[Violation]) -> None:
        with self.lock:
            self.violations += found
        for violation in found:
            say(f"VIOLATION {violation}")


def say(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def run_campaign(options: Options) -> int:
    """Runs the campaign; 0 when it ran to its end, every fault was recovered, no invariant was
    violated and no job was left."""
    plan, state = options.plan, options.state
    planned = timeline(plan)
    say(describe(plan, planned))
    stack = Stack(state, options.api_port, options.operator_port, options.sshd_port,
                  options.poll_interval, plan.seed)  # fmt: skip
    started = time.time()
    # The code under test is the commit the campaign started on.
    commit = run("git", "rev-parse", "--short", "HEAD", cwd=REPO, check=False).stdout.strip()
    hub: HubSide | None = None
    try:
        stack.start()
        hub = HubSide(stack, options.hub_port, random.Random(f"hub-{plan.seed}"), options.bound)
        hub.start()
    except BaseException:
        if hub is not None:
            hub.stop()
        stack.stop()
        raise
    workload = Workload(stack, random.Random(f"workload-{plan.seed}"), options.max_notebooks)
    monitor = Monitor(stack, hub, Checker(options.poll_interval, options.bound))
    # The users' loops first: they stop before the checks do.
    loops = [
        Loop(workload.step, options.tick),
        Loop(hub.step, 2 * options.tick),
        Loop(monitor.check, 1.0),
        Loop(monitor.check_hub, 3.0),
        Loop(stack.supervise, 1.0),
    ]

    def healthy(since: float) -> bool:
        return hub.healthy() and stack.healthy(since)

    outcomes: list[results.Outcome] = []
    aborted = None
    try:
        for loop in loops:
            loop.start()
        time.sleep(options.warmup)
        injectors = faults.injectors(stack) | {"hub": hub.injector()}
        origin = time.time()
        for fault in planned:
            time.sleep(max(0.0, origin + fault.at - time.time()))
            monitor.quiet_since = None
            outcome = faults.apply(injectors[fault.kind], fault, healthy, options.bound)
            outcomes.append(outcome)
            say(f"{fault.describe()}: {outcome.error or f'recovered in {outcome.recovery:.1f} s'}")
            if outcome.error:
                heal(stack, injectors[fault.kind], healthy, options.bound)
            monitor.quiet_since = time.time()
            check_loops(loops)
        for loop in loops[:2]:
            loop.stop()
        settle(stack, workload, monitor, options)
        for loop in loops[2:]:
            loop.stop()
        check_loops(loops)
        report(stack, plan, planned, monitor.violations, workload.ended_unexpectedly)
    except Exception as error:  # what happened until then is still written
        aborted = f"{type(error).__name__}: {error}"
        say(f"campaign aborted: {aborted}")
    finally:
        for loop in loops:
            loop.stop()
        leftovers = cancel_leftovers(stack)
        hub.stop()
        stack.stop()
    violations = monitor.violations
    swept = hub.swept()
    rows = results.write(
        options.out,
        header(options, workload, swept, started, commit)
        + (f"\n\n**Aborted**: {aborted}" if aborted else ""),
        outcomes,
        violations,
        {
            "plan": asdict(plan),
            "timeline": [asdict(f) for f in planned],
            "actions": workload.actions,
            "hub_actions": hub.actions,
            "hub_servers_started": hub.started,
            "hub_failed_actions": hub.failed_actions,
            "replica_exits": stack.exits,
            "notebooks_started": workload.created,
            "failed_actions": workload.failed_actions,
            "ended_unexpectedly": workload.ended_unexpectedly,
            "leftover_jobs_cancelled": leftovers,
            "swept_by_the_sweeper": swept,
            "aborted": aborted,
        },
    )
    say((options.out / "results.md").read_text())
    unrecovered = sum(r.injected - r.recovered for r in rows)
    return 1 if violations or unrecovered or leftovers or aborted else 0


def heal(
    stack: Stack, injector: faults.Injector, healthy: Callable[[float], bool], bound: float
) -> None:
    """After a failed recovery (already counted as such): one more restart, and the operator's
    if the fault took it down too; then the system must answer or the campaign stops."""
    try:
        injector.recover()
        stack.held_down.clear()
        stack.supervise()
    except Exception as error:  # judged by what follows
        say(f"restarting {injector.name} again failed: {error}")
    since = time.time()
    wait_until(
        lambda: healthy(since),
        bound,
        f"the stack to be healthy after {injector.name}",
        every=1,
    )


def check_loops(loops: list[Loop]) -> None:
    for loop in loops:
        if loop.error is not None:
            raise RuntimeError(f"a campaign loop failed: {loop.error!r}") from loop.error


def settle(stack: Stack, workload: Workload, monitor: Monitor, options: Options) -> None:
    """The faults have stopped: every notebook must be Ready (or have ended, if cancelled
    outside, and be deleted by the hub's part), then every user stops and all must go."""
    deadline = time.time() + options.bound
    while time.time() < deadline:
        workload.step_hub()
        reading = read(stack)
        live = [n for n in reading.notebooks if n.deleting_since is None] if reading else None
        # A notebook cancelled outside is done once it has ended and the hub's part deleted it.
        if live is not None and all(
            n.phase == "Ready" and n.name not in workload.cancelled_outside for n in live
        ):
            break
        time.sleep(1)
    reading = read(stack)
    if reading is None:
        raise RuntimeError("the API server does not answer after the last fault")
    with monitor.lock:
        monitor.violations += settled(
            reading.notebooks,
            workload.cancelled_outside,
            time.time(),
            frozenset(workload.short_lived),
        )
    monitor.add(hub_stops_all(stack, monitor.hub, options.bound))
    for notebook in reading.notebooks:
        delete_notebook(stack, notebook.name)
    try:
        wait_until(lambda: (r := read(stack)) is not None and not r.notebooks, options.bound,
                   "every notebook to go", every=1)  # fmt: skip
    except TimeoutError as error:
        say(str(error))  # the monitor names each notebook stuck Terminating
    # Orphans show after two poll intervals without their notebook.
    time.sleep(3 * options.poll_interval + 2)


def hub_stops_all(stack: Stack, hub: HubSide, bound: float) -> list[Violation]:
    """Every server stopped through the hub: each notebook the hub made must go with it. One
    left is a server the hub lost track of (a crash mid-spawn), which nobody would stop."""
    hub.stop_all()

    def made_by_hub() -> list[str] | None:
        reading = read(stack)
        return None if reading is None else [n.name for n in reading.notebooks if n.server]

    try:
        wait_until(lambda: made_by_hub() == [], bound, "the hub's notebooks to go", every=1)
        return []
    except TimeoutError:
        now = time.time()
        left = made_by_hub() or []
        return [Violation("hub-stops", name, "the hub's stop left it", now) for name in left]


def cancel_leftovers(stack: Stack) -> list[str]:
    """Cancels every live job of the campaign's namespace; returns their ids."""
    reading = read(stack)
    ids = [j.job_id for j in (reading.jobs or ()) if j.live] if reading else []
    if ids:
        run("scancel", *ids, check=False)
    return ids


def report(
    stack: Stack, plan: Plan, planned: list, violations: list[Violation], ended: dict[str, str]
) -> None:
    """What a violation needs to be replayed and understood: seed, timeline, the Events; and
    the Events of each notebook that ended without a cancel of ours."""
    for name, how in sorted(ended.items()):
        say(f"ended without a cancel of ours: {name}: {how}")
        for line in events(stack, name):
            say(f"    {line}")
    if not violations:
        return
    say(f"{len(violations)} invariant violation(s); replay with:\n{describe(plan, planned)}")
    for violation in violations:
        say(f"{violation.invariant}: {violation.notebook}: {violation.detail}")
        for line in events(stack, violation.notebook):
            say(f"    {line}")


def events(stack: Stack, name: str) -> list[str]:
    try:
        listed = stack.core.list_namespaced_event(
            stack.namespace,
            field_selector=f"involvedObject.name={name}",
            _request_timeout=TIMEOUT,
        ).items
    except API_ERRORS as error:
        return [f"(no Events: {error})"]
    return [f"{e.last_timestamp or e.event_time} {e.type} {e.reason}: {e.message}" for e in listed]


def header(
    options: Options, workload: Workload, swept: list[str], started: float, commit: str
) -> str:
    minutes = (time.time() - started) / 60
    when = dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds")
    plan = options.plan
    return (
        f"# Chaos campaign, seed {plan.seed}\n\n"
        f"`{command(plan)}` ({when}, commit "
        f"{commit}, {minutes:.0f} min): {workload.created} notebooks started on three sites "
        f"(local, SSH, slurmrestd; {len(workload.short_lived)} with a walltime that could end), "
        f"{workload.actions.get('edit', 0)} BatchCluster edits, "
        f"{len(workload.cancelled_outside)} jobs cancelled outside the hub, "
        f"{len(workload.ended_unexpectedly)} notebooks ended without such a cancel (results.json "
        f"says how), {len(swept)} notebooks of servers the hub forgot deleted by the sweeper, "
        f"pollIntervalSeconds {options.poll_interval}. Recovery: from the start "
        f"command of the broken "
        f"component (the end of a network fault) until the API server, both operator replicas, "
        f"every Slurm daemon and the login node answer and the leader has polled every site "
        f"successfully since; the outage counts from the fault itself (for the operator: the "
        f"failover to the standby)."
    )
