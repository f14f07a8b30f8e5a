"""The spawn form: a card per cluster profile the user may use, and for each card the resources
its profile lets users set, bounded by the profile's limits.

The form produces exactly the user_options the REST API takes, and both go through the same
validation in the spawner. Every card names its inputs "<cluster>/<profile>:<option>", so the
form needs no script: only the chosen card's values are read.

A batch card also shows the live availability the operator writes into the BatchCluster's status
(idle cores and GPUs, jobs waiting) for the partitions its profile may use. The spawner's pod
profiles get cards of their own, valued "pod:<name>", in a "Kubernetes (this cluster)" section.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, select_autoescape

from batchnotebook_api import CLUSTERS, GROUP, VERSION
from batchnotebook_api.options import COUNT_LIMITS, OPTION_KEYS, RESOURCE_KEYS, for_groups
from batchnotebook_api.times import now

_env = Environment(autoescape=select_autoescape(default=True))
_form = _env.from_string((resources.files(__package__) / "templates" / "form.html").read_text())

# What every notebook gets unless its profile allows more: no line of its own in a card.
UNREMARKABLE = {"nodes": "1", "tasks_per_node": "1"}
POD_PREFIX = "pod:"  # a pod card's value; cluster names (DNS names) never contain a colon
CHOICE_LISTS = {"partition": "partitions", "account": "accounts", "qos": "qos"}
LABELS = {
    "partition": "Partition / queue",
    "account": "Account",
    "qos": "Quality of service",
    "nodes": "Nodes",
    "tasks_per_node": "Tasks per node",
    "cpus": "CPUs",
    "gpus": "GPUs",
    "memory": "Memory",
    "walltime": "Time limit",
}


class OptionsFromLink(Exception):
    """Options from a /hub/spawn?... link fill in the form instead of starting a server at once."""

    jupyterhub_message = ""  # no red "Error:" banner; the form itself says what happened


@dataclass
class Field:
    """One option of a card: an input ("number", "text", "select") or a fixed value ("fixed")."""

    key: str
    kind: str
    value: str
    choices: list[str] = field(default_factory=list)
    minimum: int | None = None
    maximum: int | str | None = None
    pattern: str | None = None

    @property
    def label(self) -> str:
        return LABELS[self.key]


@dataclass
class Availability:
    """What a cluster reported for a card's partitions, one line each, and how old it is."""

    lines: list[str]
    age: str


@dataclass
class Card:
    cluster: str
    profile: dict
    fields: list[Field]
    availability: Availability | None = None

    @property
    def value(self) -> str:
        return f"{self.cluster}/{self.profile['name']}"


@dataclass
class PodCard:
    """A pod profile of the spawner: a server in this cluster, nothing to choose."""

    profile: dict

    @property
    def value(self) -> str:
        return f"{POD_PREFIX}{self.profile['name']}"


def _partition_line(partition: dict) -> str:
    """E.g. "debug: 2 of 4 cores idle · 0 of 0 GPUs · 3 jobs waiting"."""
    name = partition["name"]
    if partition.get("state", "up") != "up":
        name += f" ({partition['state']})"
    parts = []
    if "cpusTotal" in partition:
        parts.append(f"{partition.get('cpusIdle', 0)} of {partition['cpusTotal']} cores idle")
    if "gpusTotal" in partition:
        parts.append(f"{partition.get('gpusIdle', 0)} of {partition['gpusTotal']} GPUs")
    if "jobsPending" in partition:
        parts.append(f"{partition['jobsPending']} jobs waiting")
    return f"{name}: {' · '.join(parts)}"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def availability(profile: dict, status: dict, at: datetime) -> Availability | None:
    """The status's partitions that `profile` may use (its list, else its default partition,
    else all of them); None when the cluster reports none."""
    reported = status.get("partitions")
    taken_at = status.get("availabilityTime")
    if not reported or not taken_at:
        return None
    allowed = profile.get("limits", {}).get("partitions") or [
        p for p in [profile.get("defaults", {}).get("partition")] if p
    ]
    shown = [p for p in reported if not allowed or p["name"] in allowed]
    if not shown:
        return None
    age = (at - datetime.fromisoformat(taken_at.replace("Z", "+00:00"))).total_seconds()
    return Availability([_partition_line(p) for p in shown], _age(age))


def profile_allowed(profile: dict, group_names: Iterable[str]) -> bool:
    """A profile limited to JupyterHub groups is for members of one of them only."""
    allowed = profile.get("groups")
    return not allowed or bool(set(allowed) & set(group_names))


def user_group_names(spawner: Any) -> set[str]:
    return {group.name for group in spawner.user.groups}


def _fields(profile: dict, chosen: dict[str, Any]) -> list[Field]:
    """The inputs of a profile, pre-filled from `chosen` and else from the profile's defaults."""
    defaults = profile.get("defaults", {})
    limits = profile.get("limits", {})

    def value(key: str, fallback: Any = "") -> str:
        return str(chosen.get(key) or defaults.get(key, fallback))

    fields = []
    for count in COUNT_LIMITS:
        default = defaults.get(count.key, count.default)
        maximum = limits.get(count.limit, default)
        if maximum > count.minimum:
            number = value(count.key, default)
            fields.append(
                Field(count.key, "number", number, minimum=count.minimum, maximum=maximum)
            )
        elif str(default) != UNREMARKABLE.get(count.key):
            fields.append(Field(count.key, "fixed", str(default)))
    for key, maximum_key, pattern in (
        ("memory", "maxMemory", "[0-9]+[KMGTkmgt]?"),
        ("walltime", "maxWalltime", "([0-9]+-)?[0-9]{1,3}:[0-5][0-9](:[0-5][0-9])?"),
    ):
        maximum = limits.get(maximum_key)
        if maximum is None:  # the default is the ceiling: nothing to choose
            if key in defaults:
                fields.append(Field(key, "fixed", defaults[key]))
        else:
            fields.append(Field(key, "text", value(key), maximum=maximum, pattern=pattern))
    for key, list_key in CHOICE_LISTS.items():
        choices = list(limits.get(list_key) or [d for d in [defaults.get(key)] if d])
        if key == "account" and not limits.get(list_key):
            # Without a list the scheduler decides which accounts a user may charge.
            fields.append(Field(key, "text", value(key), pattern="[A-Za-z0-9_.-]+"))
        elif len(choices) == 1:
            fields.append(Field(key, "fixed", choices[0]))
        elif choices:
            fields.append(Field(key, "select", value(key, choices[0]), choices=choices))
    return fields


def link_options(spawner: Any) -> dict[str, Any]:
    """Options in the spawn page's query (?cluster=..&profile=..&cpus=.., ?pod=.., or the opt-
    prefixed form), which JupyterHub hands to the form through spawner.handler."""
    handler = getattr(spawner, "handler", None)
    if handler is None or handler.request.method != "GET":
        return {}
    options = {}
    for key, values in handler.request.query_arguments.items():
        key = key.removeprefix("opt-")
        if (key in OPTION_KEYS or key == "pod") and values:
            options[key] = values[0].decode("utf8", "replace").strip()
    return options


async def render_form(spawner: Any) -> str:
    listing = await spawner.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTERS)
    groups = user_group_names(spawner)
    from_link = link_options(spawner)
    chosen = from_link or spawner.user_options or {}
    chosen_value = f"{chosen.get('cluster')}/{chosen.get('profile')}"
    if chosen.get("pod"):
        chosen_value = f"{POD_PREFIX}{chosen['pod']}"
    at = now()
    cards = []
    for item in sorted(listing["items"], key=lambda i: i["metadata"]["name"]):
        cluster = item["metadata"]["name"]
        for profile in item["spec"].get("profiles", []):
            if profile_allowed(profile, groups):
                profile = for_groups(profile, groups)
                is_chosen = f"{cluster}/{profile['name']}" == chosen_value
                fields = _fields(profile, chosen if is_chosen else {})
                live = availability(profile, item.get("status", {}), at)
                cards.append(Card(cluster, profile, fields, live))
    # A spawner-like object without pod profiles (a plain batch setup) offers none.
    pod_cards = [
        PodCard(profile)
        for profile in getattr(spawner, "pod_profiles", [])
        if profile_allowed(profile, groups)
    ]
    offered: list[Card | PodCard] = [*cards, *pod_cards]
    values = {card.value for card in offered}
    if values and chosen_value not in values:
        chosen_value = (cards or pod_cards)[0].value
    return _form.render(
        cards=cards, pod_cards=pod_cards, chosen=chosen_value, from_link=bool(from_link)
    )


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    def first(key: str) -> str:
        return (formdata.get(key) or [""])[0].strip()

    chosen = first("profile")
    if chosen.startswith(POD_PREFIX):
        return {"pod": chosen.removeprefix(POD_PREFIX)}
    cluster, _sep, profile = chosen.partition("/")
    options: dict[str, Any] = {"cluster": cluster, "profile": profile}
    for key in RESOURCE_KEYS:
        if first(f"{chosen}:{key}"):
            options[key] = first(f"{chosen}:{key}")
    return options


def options_from_query(query: dict[str, list[str]]) -> dict[str, Any]:
    raise OptionsFromLink()
