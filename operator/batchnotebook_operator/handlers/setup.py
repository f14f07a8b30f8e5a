"""Operator settings and the shared API client."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from batchnotebook_api import FINALIZER, GROUP

from ..kube import Kube
from ..registry import registry


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own annotations and finalizer, so `kubectl describe` says whose they are.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # events are posted explicitly, at transitions
    settings.watching.server_timeout = 300
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 60
    registry.kube = await Kube.connect()


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    await registry.close()
    kube = vars(registry).pop("kube", None)
    if kube is not None:
        await kube.close()


@kopf.on.probe(id="api")
def api_connected(**_: Any) -> bool:
    return hasattr(registry, "kube")
