"""The hub's home page, extended with how long each batch server may still run.

Sites add `TEMPLATES` to `c.JupyterHub.template_paths`; its home.html extends JupyterHub's own
and asks each server's spawner for `batch_time_left`.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources

from batchnotebook_api.texts import duration_text
from batchnotebook_api.times import parse_timestamp

TEMPLATES = str(resources.files(__package__) / "templates" / "hub")


def time_left_text(ends_at: str | None, now: dt.datetime) -> str:
    """`1 h 20 min left (until 14:30 UTC)`; "" without an end time."""
    if not ends_at:
        return ""
    end = parse_timestamp(ends_at)
    left = (end - now).total_seconds()
    until = end.astimezone(dt.UTC).strftime("%H:%M UTC")
    if left <= 0:
        return f"time is up (at {until})"
    return f"{duration_text(left)} left (until {until})"
