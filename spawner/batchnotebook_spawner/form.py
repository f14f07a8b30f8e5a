"""The spawn form: one choice per cluster profile plus the resources the profile lets users set.

The form produces exactly the user_options the REST API takes, and both go through the same
validation in the spawner.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from batchnotebook_operator import CLUSTERS, GROUP, VERSION
from batchnotebook_operator.profiles import RESOURCE_KEYS
from jinja2 import Environment, select_autoescape

_env = Environment(autoescape=select_autoescape(default=True))
_form = _env.from_string((resources.files(__package__) / "templates" / "form.html").read_text())


async def render_form(spawner: Any) -> str:
    listing = await spawner.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTERS)
    choices = [
        {"cluster": item["metadata"]["name"], "profile": profile}
        for item in sorted(listing["items"], key=lambda i: i["metadata"]["name"])
        for profile in item["spec"].get("profiles", [])
    ]
    last = spawner.user_options or {}
    return _form.render(choices=choices, last=last)


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    def first(key: str) -> str:
        return (formdata.get(key) or [""])[0].strip()

    cluster, _sep, profile = first("profile").partition("/")
    options: dict[str, Any] = {"cluster": cluster, "profile": profile}
    for key in RESOURCE_KEYS:
        if first(key):
            options[key] = first(key)
    return options
