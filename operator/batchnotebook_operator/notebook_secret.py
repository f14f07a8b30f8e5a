"""A notebook's own Secret: the one the spawner made for it, and no other.

A BatchNotebook's spec.envSecretName could name any Secret of its namespace, e.g. another
notebook's, whose tokens would then go into a job its writer owns. So the Secret must be named
from the notebook (own_secret_name, the spawner's naming rule) and owned by it (an
ownerReference to the notebook's uid, which the spawner adds once the notebook exists).
"""

from __future__ import annotations

import base64
from typing import Any

from batchnotebook_api import NOTEBOOK_KIND, own_secret_name

from .kube import Kube


class SecretNotOwned(Exception):
    """The Secret a notebook names is not its own; the message says why. `final` is False while
    the Secret of the right name has no owner yet (the spawner adds it right after creating the
    notebook), True when it never will be this notebook's."""

    def __init__(self, message: str, *, final: bool = True) -> None:
        super().__init__(message)
        self.final = final


def _field(thing: Any, snake: str, camel: str) -> Any:
    """A field of an API object, whether a kubernetes client model or a plain dict."""
    if isinstance(thing, dict):
        return thing.get(camel, thing.get(snake))
    return getattr(thing, snake, None)


def owner_uids(secret: Any) -> set[str]:
    """The uids of the BatchNotebooks that own `secret`."""
    metadata = _field(secret, "metadata", "metadata") or {}
    references = _field(metadata, "owner_references", "ownerReferences") or []
    return {
        _field(reference, "uid", "uid")
        for reference in references
        if _field(reference, "kind", "kind") == NOTEBOOK_KIND
    }


def owns(secret: Any, notebook_uid: str) -> bool:
    return notebook_uid in owner_uids(secret)


def name_refusal(notebook: dict) -> str | None:
    """Why the notebook's envSecretName is not its own Secret's name, or None."""
    name = notebook["metadata"]["name"]
    named = notebook["spec"].get("envSecretName")
    expected = own_secret_name(name)
    if named != expected:
        return f"envSecretName {named!r} is not this notebook's own Secret {expected!r}"
    return None


async def own_secret_data(kube: Kube, notebook: dict) -> dict[str, str]:
    """The values of the notebook's own Secret; SecretNotOwned if the Secret it names is not its
    own (read nothing from it then), ApiException if it cannot be read.

    `notebook` is the BatchNotebook as the API returns it (metadata.name, metadata.uid, spec)."""
    refused = name_refusal(notebook)
    if refused:
        raise SecretNotOwned(refused)  # before any read
    meta = notebook["metadata"]
    name = own_secret_name(meta["name"])
    secret = await kube.core.read_namespaced_secret(name, meta["namespace"])
    if not owns(secret, meta["uid"]):
        # Owned by another BatchNotebook: it never becomes this one's. Owned by none yet: the
        # spawner adds this notebook's reference right after creating it.
        raise SecretNotOwned(
            f"Secret {name} is not owned by this BatchNotebook (no ownerReference to its uid)",
            final=bool(owner_uids(secret)),
        )
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
