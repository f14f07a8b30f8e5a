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

from .results import Outcome
from .schedule import Fault

if TYPE_CHECKING:  # the stack needs the Kubernetes client; apply() and its tests do not
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


def injectors(stack: Stack) -> dict[str, Injector]:
    plane = stack.plane
    return {
        injector.name: injector
        for injector in (
            Injector("operator", stack.operator.kill, stack.operator.start),
            # ControlPlane.start starts whichever of etcd and kube-apiserver does not run.
            Injector("apiserver", lambda: kill(plane.apiserver), plane.start),
            Injector("etcd", lambda: kill(plane.etcd), plane.start),
            # SIGTERM, then SIGKILL: dev/slurm.sh's stop; slurmctld keeps its state either way.
            Injector(
                "slurmctld", lambda: stack.slurm("stop-ctld"), lambda: stack.slurm("start-ctld")
            ),
            # Ends every connection the login node holds, as a rebooting login node would.
            Injector("sshd", lambda: stack.sshd("stop"), lambda: stack.sshd("start")),
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
