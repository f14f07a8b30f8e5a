"""A campaign's fault timeline, drawn from its seed alone: the same seed, count and kinds give the
same faults in the same order, at the same offsets, for the same durations. Printing it with the
command that drew it lets a failing run be replayed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# What faults.py can break on the process stack, in the order the table lists them.
KINDS = (
    "operator", "hub", "apiserver", "etcd", "slurmctld", "slurmdbd", "slurmd", "slurmrestd",
    "sshd", "emulator", "partition", "loss", "latency", "stall", "reset",
)  # fmt: skip


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    at: float  # seconds after the campaign started
    down: float  # seconds the component stays down before it is started again

    def describe(self) -> str:
        return f"#{self.index:03d} t+{self.at:7.1f}s {self.kind:<10} down {self.down:4.1f}s"


@dataclass(frozen=True)
class Plan:
    """How faults are drawn: a fault every `gap` seconds (uniform in the range) after the one
    before has ended, each down for `down` seconds (uniform in the range)."""

    seed: int
    count: int
    kinds: tuple[str, ...] = KINDS
    gap: tuple[float, float] = (5.0, 15.0)
    down: tuple[float, float] = (1.0, 15.0)
    # This share of the faults lasts `long_down` seconds instead: outages past every retry.
    long_share: float = 0.0
    long_down: tuple[float, float] = (60.0, 120.0)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be some of {', '.join(KINDS)}, not {self.kinds}")
        if not 0 <= self.long_share <= 1:
            raise ValueError(f"the share of long faults must be within 0..1, not {self.long_share}")
        for low, high in (self.gap, self.down, self.long_down):
            if not 0 <= low <= high:
                raise ValueError(f"bad range: {low}..{high}")
        if self.count < 0:
            raise ValueError("the count of faults cannot be negative")


def timeline(plan: Plan) -> list[Fault]:
    """The faults of `plan`, one after another: the next is drawn to start after the one before
    has ended (the runner also waits for the recovery, so real starts may drift later)."""
    rng = random.Random(plan.seed)
    faults: list[Fault] = []
    deck: list[str] = []
    at = 0.0
    for index in range(plan.count):
        at += round(rng.uniform(*plan.gap), 1)
        down = round(rng.uniform(*plan.down), 1)
        if plan.long_share and rng.random() < plan.long_share:  # no draw: the old timelines
            down = round(rng.uniform(*plan.long_down), 1)
        # Dealt from shuffled decks of the kinds: every kind once in each run of len(kinds)
        # faults, so a short campaign covers them all and a long one breaks each as often.
        if not deck:
            deck = list(plan.kinds)
            rng.shuffle(deck)
        faults.append(Fault(index, deck.pop(), round(at, 1), down))
        at += down
    return faults


def command(plan: Plan) -> str:
    """The command line that draws this plan's timeline again."""
    long = (
        f" --long {plan.long_share:g} {plan.long_down[0]:g} {plan.long_down[1]:g}"
        if plan.long_share
        else ""
    )
    return (
        f"python -m chaos run --seed {plan.seed} --faults {plan.count} "
        f"--kinds {' '.join(plan.kinds)} --gap {plan.gap[0]:g} {plan.gap[1]:g} "
        f"--down {plan.down[0]:g} {plan.down[1]:g}{long}"
    )


def describe(plan: Plan, faults: Sequence[Fault]) -> str:
    """The timeline, headed by the command that draws it again."""
    return "\n".join([f"seed {plan.seed}: {command(plan)}", *(f.describe() for f in faults)])
