"""Who of several operator replicas is the active one: the decisions of a Lease-based leader
election, apart from the API calls (lease.py makes them), so that a test can give the clock.

As kube-controller-manager does it: the holder renews a coordination.k8s.io Lease every retry
period; another replica takes the Lease only once it has seen the same record, unchanged, for
the whole lease duration by its own clock (never by the holder's renewTime: the clocks of two
nodes may differ). The holder stops acting once it could not renew for the renew deadline,
which is shorter than the duration: it has stopped before anyone else may start. Every write
names the resourceVersion it read, so two replicas can never both win the same record.
Times here are time.monotonic() seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    duration: float = 15.0  # how long a record must stand still before another may take it
    renew_deadline: float = 10.0  # how long the holder keeps acting without a renewal
    retry_period: float = 2.0  # how often the Lease is read (and renewed by its holder)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "the lease needs 0 < retry period < renew deadline < duration, got "
                f"{self.retry_period} < {self.renew_deadline} < {self.duration}"
            )


@dataclass(frozen=True)
class Record:
    """What a Lease says: its holder ("" once released), the duration the holder declared, and
    the resourceVersion that changes with every write (a renewal too)."""

    holder: str
    duration: float
    version: str
    transitions: int = 0
    url: str = ""  # where the holder takes job reports (for the others to forward to)


class Election:
    def __init__(self, identity: str, timing: Timing) -> None:
        self.identity = identity
        self.timing = timing
        self.record: Record | None = None
        self.seen_at = float("-inf")  # when this replica saw the record change
        self.renewed_at: float | None = None  # the last write of ours that the API accepted

    def observe(self, record: Record | None, now: float) -> None:
        """The Lease as just read (None: there is none)."""
        if record != self.record:
            self.record, self.seen_at = record, now

    def won(self, record: Record, sent: float) -> None:
        """Our write (a claim or a renewal), sent at `sent`, was accepted: `record` is the Lease
        it made. The deadline counts from the sending: the others' wait began after it."""
        self.observe(record, sent)
        self.renewed_at = sent

    def may_take(self, now: float) -> bool:
        """Whether this replica may claim the Lease now."""
        record = self.record
        if record is None or not record.holder or record.holder == self.identity:
            return True
        return now - self.seen_at >= record.duration

    def leading(self, now: float) -> bool:
        """Whether this replica may act: it holds the Lease and renewed it within the deadline."""
        return (
            self.record is not None
            and self.record.holder == self.identity
            and self.renewed_at is not None
            and now - self.renewed_at < self.timing.renew_deadline
        )

    def time_left(self, now: float) -> float:
        """How long this leader may still act without another renewal (0 if not leading)."""
        if not self.leading(now) or self.renewed_at is None:
            return 0.0
        return self.timing.renew_deadline - (now - self.renewed_at)

    def leader_url(self) -> str:
        """Where the active replica takes reports ("" when none is known)."""
        record = self.record
        if record is None or not record.holder or record.holder == self.identity:
            return ""
        return record.url

    def claim(self) -> tuple[str, int]:
        """(holder, leaseTransitions) to write: ours, counting a change of holder."""
        record = self.record
        transitions = record.transitions if record else 0
        if record is not None and record.holder != self.identity:
            transitions += 1
        return self.identity, transitions
