"""One shared watch of BatchNotebooks per namespace, for every user of the hub.

kubespawner's reflector does the list-and-watch; this only points it at our custom resource.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubespawner.reflector import NamespacedResourceReflector

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION


class _NotebookList:
    """Gives CustomObjectsApi the list-method shape the reflector calls."""

    def __init__(self, custom: Any) -> None:
        self.custom = custom

    def list_batchnotebooks(self, namespace: str, **kwargs: Any) -> Any:
        return self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, NOTEBOOKS, **kwargs
        )


class NotebookReflector(NamespacedResourceReflector):
    kind = "batchnotebooks"
    api_group_name = "CustomObjectsApi"
    list_method_name = "list_batchnotebooks"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api: Any = _NotebookList(self.api)
        self.gave_up = False
        self.on_failure = self._give_up

    def _give_up(self) -> None:
        self.gave_up = True

    @property
    def broken(self) -> bool:
        """The first list failed, or the watch gave up after repeated errors: its cache is empty
        or goes stale, so it must be replaced (KubeSpawner exits the hub instead)."""
        first = self.first_load_future
        failed = first.done() and not first.cancelled() and first.exception() is not None
        return failed or self.gave_up

    def get(self, namespace: str, name: str) -> dict | None:
        return self.resources.get(f"{namespace}/{name}")


# One watch per namespace, shared by every spawner of the hub process.
SHARED: dict[str, NotebookReflector] = {}


async def shared_reflector(parent: Any, namespace: str) -> NotebookReflector:
    """The namespace's watch, once its first list is in."""
    reflector = SHARED.get(namespace)
    if reflector is None or reflector.broken:
        # A failed first list (an API server still starting) or a watch that gave up is not
        # kept: the next caller lists afresh, rather than trusting an empty or stale cache.
        reflector = NotebookReflector(parent=parent, namespace=namespace)
        SHARED[namespace] = reflector
        reflector.start_task = asyncio.ensure_future(reflector.start())
        # A failed start is logged by the reflector and raised below, through its future.
        reflector.start_task.add_done_callback(lambda task: task.cancelled() or task.exception())
    await reflector.first_load_future
    return reflector


def running_reflector(namespace: str) -> NotebookReflector | None:
    """The namespace's watch if one was started, without starting one (no await)."""
    return SHARED.get(namespace)
