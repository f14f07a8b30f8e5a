"""The slurmrestd OpenAPI versions this client speaks, as data, and the choice among them.

Slurm 22.05 serves v0.0.36 to 38; 23.11 v0.0.38 to 40; 24.05 v0.0.39 to 41; 24.11 v0.0.40 to
42; 25.05 v0.0.40 to 43; 25.11 v0.0.41 to 44. From v0.0.40 on, numbers are typed (plain integers
or `{set, infinite, number}`), a job's state is a list of flags, its environment a list of
`KEY=VALUE` strings and its script part of `job`; `GET /slurm/{v}/jobs/state` answers a batched
state query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ...errors import SchedulerUnavailable


@dataclass(frozen=True)
class ApiVersion:
    """What one OpenAPI plugin version of slurmrestd expects and offers."""

    name: str
    #: v0.0.40 and later: values typed (minutes, megabytes, integers), `environment` a list of
    #: KEY=VALUE and the script inside `job`; v0.0.38 parses sbatch's own strings.
    typed: bool
    #: `GET /slurm/{v}/jobs/state?job_id=…`: states only, for many jobs at once.
    jobs_state: bool

    @property
    def number(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.name.removeprefix("v").split("."))


#: Newest first: the order of preference.
SUPPORTED = tuple(
    ApiVersion(name, typed=name != "v0.0.38", jobs_state=name != "v0.0.38")
    for name in ("v0.0.44", "v0.0.43", "v0.0.42", "v0.0.41", "v0.0.40", "v0.0.38")
)
BY_NAME = {version.name: version for version in SUPPORTED}
#: The OpenAPI spec's paths name the plugin versions: /slurm/v0.0.42/jobs, /slurmdb/v0.0.42/...
OFFERED_PATH = re.compile(r"^/slurm/(v\d+\.\d+\.\d+)/")


def offered(spec: dict) -> set[str]:
    """The versions a `GET /openapi/v3` answer lists under /slurm/."""
    return {m[1] for path in spec.get("paths") or {} if (m := OFFERED_PATH.match(path))}


def choose(offers: Iterable[str], pinned: str = "") -> ApiVersion:
    """The newest version both sides speak, or the pinned one if the server offers it.
    Raises SchedulerUnavailable with both lists when there is none."""
    offers = set(offers)
    listed = ", ".join(sorted(offers, key=_order)) or "none"
    ours = ", ".join(v.name for v in reversed(SUPPORTED))
    if pinned:
        if pinned not in BY_NAME:
            raise SchedulerUnavailable(
                f"apiVersion {pinned} is not one this operator speaks ({ours})"
            )
        if pinned not in offers:
            raise SchedulerUnavailable(
                f"apiVersion {pinned} is pinned, but slurmrestd offers only {listed}"
            )
        return BY_NAME[pinned]
    for version in SUPPORTED:
        if version.name in offers:
            return version
    raise SchedulerUnavailable(
        f"slurmrestd offers {listed}; this operator speaks {ours}: no version in common"
    )


def _order(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.removeprefix("v").split("."))
    except ValueError:
        return (0,)
