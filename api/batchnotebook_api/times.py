"""Times as Kubernetes writes them (RFC 3339, UTC). Only `now()` reads the clock: everything else
takes the time as an argument, so that it is tested without one."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC, as Kubernetes writes it."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def seconds_between(stamp: str | None, now: dt.datetime) -> float:
    """Seconds from `stamp` to `now`; 0 when there is no stamp."""
    return (now - parse_timestamp(stamp)).total_seconds() if stamp else 0.0
