"""The few Kubernetes API calls the operator makes itself (kopf makes the rest)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from typing import Any, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import API_VERSION, CLUSTERS, GROUP, NOTEBOOKS, VERSION
from batchnotebook_api.times import now, timestamp

COMPONENT = "batchnotebook-operator"
log = logging.getLogger(__name__)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    async def secret_bytes(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's values as they are, for binary ones such as a JWT key."""
        secret = await self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def notebook(self, namespace: str, name: str) -> dict | None:
        try:
            return await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, NOTEBOOKS, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        """False if the notebook is gone (nothing left to update)."""
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                NOTEBOOKS,
                name,
                {"status": status},
                # The stub omits _content_type; the real method takes it (in **kwargs).
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return False
        return True

    async def cluster(self, name: str) -> dict | None:
        try:
            return await self.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def patch_cluster_status(
        self, name: str, status: dict, resource_version: str | None = None
    ) -> dict:
        """The cluster as written. With `resource_version`, only if the cluster is still at it
        (else ApiException 409): a list in a merge patch replaces the whole list."""
        patch: dict = {"status": status}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            CLUSTERS,
            name,
            patch,
            # The stub omits _content_type; the real method takes it (in **kwargs).
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )

    async def event(
        self,
        ref: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        namespace: str = "default",
    ) -> None:
        """Post a core/v1 Event about `ref` (a body or anything with apiVersion, kind, metadata);
        about a cluster-scoped object, in `namespace`."""
        meta = ref["metadata"]
        when = timestamp(now())
        try:
            await self._create_event(meta, ref, when, type_, reason, message, namespace)
        except ApiException as error:  # a lost event must not stop the reconciliation
            log.warning("cannot post event %s on %s: %s", reason, meta["name"], error.reason)

    async def _create_event(
        self,
        meta: Mapping[str, Any],
        ref: Mapping[str, Any],
        when: str,
        type_: str,
        reason: str,
        message: str,
        namespace: str,
    ) -> None:
        # The model says datetime, but the client sends a str as it is: Kubernetes' own format,
        # where a datetime would go out with isoformat()'s microseconds and offset.
        stamp = cast(dt.datetime, when)
        # A cluster-scoped object's Events live in some namespace, but name none for the object
        # (kubectl describe looks them up so).
        where = meta.get("namespace") or namespace
        await self.core.create_namespaced_event(
            where,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(
                    name=f"{meta['name']}.{secrets.token_hex(8)}", namespace=where
                ),
                involved_object=client.V1ObjectReference(
                    api_version=ref.get("apiVersion", API_VERSION),
                    kind=ref.get("kind", "BatchNotebook"),
                    name=meta["name"],
                    namespace=meta.get("namespace"),
                    uid=meta.get("uid"),
                ),
                type=type_,
                reason=reason,
                message=message[:1024],
                count=1,
                first_timestamp=stamp,
                last_timestamp=stamp,
                source=client.V1EventSource(component=COMPONENT),
                reporting_component=COMPONENT,
                reporting_instance=COMPONENT,
            ),
        )
