"""User options → the resources of one job, checked against the profile's limits.

The spawner calls this before it creates anything; the operator calls it again before it submits,
so a BatchNotebook written by hand gets no more than the form would allow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import accounts
from .errors import InvalidOptions

RESOURCE_KEYS = (
    "partition",
    "nodes",
    "tasks_per_node",
    "cpus",
    "memory",
    "gpus",
    "walltime",
    "account",
    "qos",
)
OPTION_KEYS = ("cluster", "profile", *RESOURCE_KEYS)
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MEMORY = re.compile(r"^(\d{1,9})([KMGT]?)B?$", re.IGNORECASE)
WALLTIME = re.compile(r"^(?:(\d{1,4})-)?(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$")
MEMORY_UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@dataclass(frozen=True)
class Resources:
    """One job's request. `cpus` are per task; memory and GPUs per node; a job has `nodes`
    nodes with `tasks_per_node` tasks on each (Jupyter runs on the first)."""

    nodes: int = 1
    tasks_per_node: int = 1
    cpus: int = 1
    memory: str | None = None
    gpus: int = 0
    walltime: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    extras: dict[str, str] = field(default_factory=dict)

    def to_spec(self) -> dict[str, Any]:
        spec = {k: v for k, v in asdict(self).items() if v not in (None, {})}
        # One task on one node is what every notebook had before these keys: left out, so that
        # an operator that does not know them still takes a single-node spec.
        for key in ("nodes", "tasks_per_node"):
            if spec[key] == 1:
                del spec[key]
        return spec

    @property
    def cpus_per_node(self) -> int:
        return self.cpus * self.tasks_per_node

    @property
    def memory_mb(self) -> int | None:
        return memory_mb(self.memory) if self.memory else None

    @property
    def walltime_seconds(self) -> int | None:
        return walltime_seconds(self.walltime) if self.walltime else None


def memory_mb(text: str) -> int:
    match = MEMORY.match(text.strip())
    if not match:
        raise InvalidOptions(f"memory {text!r} is not a size like 4G or 512M")
    return int(int(match[1]) * MEMORY_UNITS[match[2].upper()])


def walltime_seconds(text: str) -> int:
    match = WALLTIME.match(text.strip())
    if not match:
        raise InvalidOptions(f"walltime {text!r} is not a time like 01:30:00 or 2-00:00:00")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def find_profile(cluster_name: str, cluster_spec: dict, profile_name: str) -> dict:
    for profile in cluster_spec.get("profiles", []):
        if profile.get("name") == profile_name:
            return profile
    names = ", ".join(p.get("name", "?") for p in cluster_spec.get("profiles", []))
    raise InvalidOptions(
        f"cluster {cluster_name!r} has no profile {profile_name!r} (it has: {names})"
    )


def for_groups(profile: dict, group_names: Iterable[str]) -> dict:
    """The profile as members of `group_names` get it: each of its groupOverrides that names one
    of their groups replaces the defaults and limits it sets, in order (a later one wins).

    The spawner and the operator both call it with the groups the hub recorded in the notebook's
    spec, so both validate against the same bounds."""
    groups = set(group_names)
    effective = {
        **profile,
        "defaults": dict(profile.get("defaults", {})),
        "limits": dict(profile.get("limits", {})),
    }
    for override in profile.get("groupOverrides", []):
        if not groups & set(override.get("groups", [])):
            continue
        for part in ("defaults", "limits"):
            replacements = override.get(part, {})
            extras = {**effective[part].get("extras", {}), **replacements.get("extras", {})}
            effective[part] |= replacements
            if extras:
                effective[part]["extras"] = extras
    return effective


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidOptions(f"{key} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        return int(value)
    raise InvalidOptions(f"{key} must be a whole number, not {value!r}")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidOptions(f"{key} must be text, not {value!r}")
    return str(value).strip()


@dataclass(frozen=True)
class CountLimit:
    """A whole number a user may choose, from `minimum` up to the profile's limit."""

    key: str
    limit: str  # the profile's limits key; its default is the profile's default
    default: int
    minimum: int


@dataclass(frozen=True)
class SizeLimit:
    """An amount written with units (memory, walltime), at most the profile's limit."""

    key: str
    limit: str
    measure: Callable[[str], int]
    minimum: int
    too_small: str  # what the smallest amount is, in the user's words
    beyond: str  # "more than", "longer than"
    written: Callable[[str], str]  # as the job script gets it


# A profile that says nothing about nodes allows one: sites that never set maxNodes see no change.
COUNT_LIMITS = (
    CountLimit("nodes", "maxNodes", 1, 1),
    CountLimit("tasks_per_node", "maxTasksPerNode", 1, 1),
    CountLimit("cpus", "maxCpus", 1, 1),
    CountLimit("gpus", "maxGpus", 0, 0),
)
# Zero is not "nothing": to Slurm --mem=0 is the whole node and --time=0 no limit at all.
SIZE_LIMITS = (
    SizeLimit(
        "memory",
        "maxMemory",
        memory_mb,
        1,
        "1M",
        "more than",
        lambda t: t.upper().removesuffix("B"),
    ),
    SizeLimit("walltime", "maxWalltime", walltime_seconds, 60, "00:01:00", "longer than", str),
)
# (option, the profile's limits key): a closed list, but for accounts when the admin lists none
# (they are the scheduler's to check).
NAME_CHOICES = (("partition", "partitions"), ("account", "accounts"), ("qos", "qos"))


def resolve(profile: dict, requested: dict[str, Any]) -> Resources:
    """The resources of a job: the profile's defaults overridden by `requested`, within limits."""
    defaults = profile.get("defaults", {})
    limits = profile.get("limits", {})
    name = profile.get("name", "?")
    unknown = sorted(set(requested) - set(RESOURCE_KEYS) - {"extras"})
    if unknown:
        raise InvalidOptions(f"unknown option(s): {', '.join(unknown)}")
    chosen = {k: v for k, v in requested.items() if v not in (None, "")}

    counts: dict[str, int] = {}
    for count in COUNT_LIMITS:
        number = _integer(count.key, chosen.get(count.key, defaults.get(count.key, count.default)))
        ceiling = limits.get(count.limit, defaults.get(count.key, count.default))
        if not count.minimum <= number <= ceiling:
            raise InvalidOptions(
                f"{count.key} must be between {count.minimum} and {ceiling} in profile "
                f"{name!r}, not {number}"
            )
        counts[count.key] = number

    sizes: dict[str, str | None] = {}
    for size in SIZE_LIMITS:
        value = chosen.get(size.key, defaults.get(size.key))
        if value is None:
            sizes[size.key] = None
            continue
        text = _text(size.key, value)
        amount = size.measure(text)
        ceiling = limits.get(size.limit, defaults.get(size.key))
        if amount < size.minimum:
            raise InvalidOptions(f"{size.key} must be at least {size.too_small}, not {text}")
        if ceiling is None or amount > size.measure(ceiling):
            raise InvalidOptions(
                f"{size.key} {text} is {size.beyond} profile {name!r} allows "
                f"({ceiling or 'its default'})"
            )
        sizes[size.key] = size.written(text)

    choices: dict[str, str] = {}
    for key, allowed_key in NAME_CHOICES:
        value = chosen.get(key, defaults.get(key))
        if value is None:
            continue
        value = _text(key, value)
        if not NAME.match(value):
            raise InvalidOptions(f"{key} {value!r} may only contain letters, digits, '_', '.', '-'")
        allowed = limits.get(allowed_key) or [d for d in [defaults.get(key)] if d]
        if (allowed or key != "account") and value not in allowed:
            raise InvalidOptions(
                f"{key} {value!r} is not allowed in profile {name!r} (choose from: "
                f"{', '.join(map(str, allowed)) or 'nothing, it is fixed'})"
            )
        choices[key] = value

    extras = dict(defaults.get("extras", {}))
    for key, value in (chosen.get("extras") or {}).items():
        allowed = limits.get("extras", {}).get(key)
        if allowed is None:
            raise InvalidOptions(f"extra option {key!r} is not allowed in profile {name!r}")
        if value not in allowed:
            raise InvalidOptions(
                f"{key} {value!r} is not allowed in profile {name!r} (choose from: "
                f"{', '.join(allowed)})"
            )
        extras[key] = value

    # One dict for all three: mypy would check each ** against every field of Resources.
    fields: dict[str, Any] = {**counts, **sizes, **choices}
    return Resources(**fields, extras=extras)


# Schedulers on which a job spans nodes only with a cluster setting (None: never). Grid Engine
# spreads the slots of a parallel environment, whose name is the site's; HTCondor's parallel
# universe starts a job per machine, not one allocation a notebook's terminal could use.
MULTI_NODE_SETTINGS: dict[str, str | None] = {"sge": "parallelEnvironment", "htcondor": None}


def profile_resources(
    cluster_spec: dict, profile: dict, group_names: Iterable[str], requested: dict[str, Any]
) -> Resources:
    """`resolve` for members of `group_names`, and on this cluster's scheduler: nodes beyond one
    only where it can allocate them."""
    resources = resolve(for_groups(profile, group_names), requested)
    scheduler = cluster_spec.get("scheduler", "")
    if resources.nodes == 1 or scheduler not in MULTI_NODE_SETTINGS:
        return resources
    setting = MULTI_NODE_SETTINGS[scheduler]
    if setting is None:
        raise InvalidOptions(
            f"nodes {resources.nodes}: a notebook on {scheduler} runs on one node only"
        )
    if not cluster_spec.get(setting):
        raise InvalidOptions(
            f"nodes {resources.nodes}: this {scheduler} cluster sets no {setting}, which a job "
            "on several nodes needs"
        )
    return resources


def split_options(options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Check a user_options dict's shape; return (cluster, profile, requested resources)."""
    if not isinstance(options, dict):
        raise InvalidOptions("user options must be an object")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise InvalidOptions(
            f"unknown option(s): {', '.join(map(str, unknown))} (allowed: {', '.join(OPTION_KEYS)})"
        )
    cluster = _required_name("cluster", options.get("cluster"))
    profile = _required_name("profile", options.get("profile"))
    return cluster, profile, {k: options[k] for k in RESOURCE_KEYS if k in options}


def _required_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", value):
        raise InvalidOptions(f"{key} is required and must be a name, not {value!r}")
    return value


def unix_user_of(cluster_spec: dict, hub_user: str) -> str:
    """The Unix account a hub user's jobs run as (the cluster's userMapping); AccountRefused
    (an InvalidOptions) when the mapping's policy denies it, e.g. the hub user `root`."""
    template = (cluster_spec.get("userMapping") or {}).get("template", "{username}")
    return accounts.check(cluster_spec, template.format(username=hub_user))


def notebook_resources(cluster_name: str, cluster_spec: dict, notebook_spec: dict) -> Resources:
    """A BatchNotebook's resources, checked as the spawner checked them when it wrote the spec:
    its Unix user is the one its hub user maps to, its resources are within its profile's limits
    for the groups recorded in the spec."""
    expected_user = unix_user_of(cluster_spec, notebook_spec["hubUser"])
    if notebook_spec["unixUser"] != expected_user:
        raise InvalidOptions(
            f"hub user {notebook_spec['hubUser']!r} maps to Unix user "
            f"{expected_user!r}, not {notebook_spec['unixUser']!r}"
        )
    profile = find_profile(cluster_name, cluster_spec, notebook_spec["profile"])
    return profile_resources(
        cluster_spec,
        profile,
        notebook_spec.get("groups", []),
        dict(notebook_spec.get("resources", {})),
    )
