"""Fault injectors as data: how to break one component and how to start it again, on the
campaign's process stack. `apply` runs one fault of the timeline and records when the system was
healthy again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import sites
from .network import LATENCY, RESET, STALL, Toxic
from .results import Outcome
from .schedule import Fault

if TYPE_CHECKING:  # the stack needs the Kubernetes client; apply() and its tests do not
    from devstack.host import OperatorProcess
    from devstack.processes import Daemon

    from .stack import Stack


@dataclass(frozen=True)
class Injector:
    name: str
    inject: Callable[[], object]
    recover: Callable[[], object]


def kill(daemon: Daemon) -> None:
    """SIGKILL, as a crash or an OOM kill would end it."""
    pid = daemon.pid()
    if pid is None:
        raise RuntimeError(f"{daemon.name} is not running")
    os.kill(pid, signal.SIGKILL)


class Failover:
    """Kills the replica holding the Lease; starts it again as a Deployment would (it comes back
    as a standby, or leads again if the other has not taken over yet)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.killed: OperatorProcess | None = None

    def inject(self) -> None:
        leader = self.stack.leader()
        if leader is None:
            raise RuntimeError("no replica holds the Lease")
        self.stack.held_down.add(leader.name)
        leader.kill()
        self.killed = leader

    def recover(self) -> None:
        if self.killed is not None:
            with self.stack.starting:
                if not self.killed.alive:
                    self.killed.start()
                self.stack.held_down.discard(self.killed.name)


# The proxies each network fault acts on: the sites only, or the API server too.
SITES = ("ssh", "rest")
EVERYTHING = (*SITES, "apiserver")
LOSS = 0.3  # the share of packets a lossy link drops


def injectors(stack: Stack) -> dict[str, Injector]:
    plane, network = stack.plane, stack.network
    failover = Failover(stack)

    def crash(daemon: str) -> Injector:
        """SIGKILL for a Slurm daemon; `dev/slurm.sh start` starts what does not run."""
        return Injector(daemon, lambda: stack.slurm("kill", daemon), lambda: stack.slurm("start"))

    def toxic(name: str, which: Toxic, proxies: tuple[str, ...]) -> Injector:
        return Injector(name, lambda: network.add_toxic(which, proxies), network.heal)

    return {
        injector.name: injector
        for injector in (
            Injector("operator", failover.inject, failover.recover),
            # ControlPlane.start starts whichever of etcd and kube-apiserver does not run.
            Injector("apiserver", lambda: kill(plane.apiserver), plane.start),
            Injector("etcd", lambda: kill(plane.etcd), plane.start),
            # SIGTERM, then SIGKILL: dev/slurm.sh's stop. A SIGKILL could lose a job slurmctld
            # took but had not saved yet: Slurm's loss, not one of ours to measure.
            Injector(
                "slurmctld", lambda: stack.slurm("stop-ctld"), lambda: stack.slurm("start-ctld")
            ),
            crash("slurmdbd"),
            crash("slurmd"),
            crash("slurmrestd"),
            # Ends every connection the login node holds, as a rebooting login node would.
            Injector("sshd", lambda: stack.sshd("stop"), lambda: stack.sshd("start")),
            # The PBS Pro emulator's server down: its commands print "cannot connect".
            Injector(
                "emulator", lambda: sites.emulator_down(True), lambda: sites.emulator_down(False)
            ),
            Injector("partition", lambda: network.drop(SITES), network.heal),
            Injector("loss", lambda: network.drop(EVERYTHING, LOSS), network.heal),
            toxic("latency", LATENCY, EVERYTHING),
            toxic("stall", STALL, SITES),
            toxic("reset", RESET, EVERYTHING),
        )
    }


def apply(
    injector: Injector,
    fault: Fault,
    healthy: Callable[[float], bool],
    bound: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Breaks, waits `fault.down` seconds, restarts, then waits up to `bound` seconds for the
    system to be healthy since the restart began (`healthy(restarted)`); an exception or a
    missed bound is the outcome's error."""
    injected = restarted = None
    try:
        injector.inject()
        injected = clock()
        sleep(fault.down)
        restarted = clock()
        injector.recover()
        while not healthy(restarted):
            if clock() - restarted > bound:
                return Outcome(fault, injected, restarted, None, f"not healthy after {bound:g} s")
            sleep(0.5)
        return Outcome(fault, injected, restarted, clock())
    except Exception as error:  # the campaign records it and goes on
        return Outcome(fault, injected, restarted, None, f"{type(error).__name__}: {error}")
