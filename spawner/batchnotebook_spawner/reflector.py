"""One shared watch of BatchNotebooks per namespace, for every user of the hub.

kubespawner's reflector does the list-and-watch; this only points it at our custom resource.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiException
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


async def read_notebook(custom: Any, namespace: str, name: str) -> dict | None:
    """A notebook as the API server has it, not the cache (None: there is none)."""
    try:
        return await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, NOTEBOOKS, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def delete_notebook(custom: Any, core: Any, namespace: str, name: str, secret: str) -> None:
    """A notebook and its Secret; either may be gone already."""
    await ignore_missing(custom.delete_namespaced_custom_object, GROUP, VERSION, namespace,
                         NOTEBOOKS, name)  # fmt: skip
    await ignore_missing(core.delete_namespaced_secret, secret, namespace)


async def ignore_missing(method: Any, *args: Any) -> None:
    """An API call whose 404 is as good as its success (a deletion)."""
    try:
        await method(*args)
    except ApiException as error:
        if error.status != 404:
            raise
