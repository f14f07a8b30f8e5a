"""What a batch server is made of in Kubernetes: its BatchNotebook, whose spec the user's options
become once checked against the profile, and its own Secret (the server's environment and its
report token), owned by the notebook. Pure: the spawner sends them."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from batchnotebook_api import API_VERSION, NOTEBOOK_KIND
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import (
    find_profile,
    profile_resources,
    split_options,
    unix_user_of,
)

from .form import profile_allowed


async def notebook_spec(
    options: dict,
    cluster_named: Callable[[str], Awaitable[dict]],
    hub_user: str,
    server_name: str,
    groups: list[str],
    secret_name: str,
) -> dict:
    """The BatchNotebook spec for a user's options; InvalidOptions says what is wrong."""
    if not options:
        raise InvalidOptions(
            'choose a cluster and a profile: user_options {"cluster": ..., "profile": ...}'
        )
    cluster_name, profile_name, requested = split_options(options)
    cluster = await cluster_named(cluster_name)
    profile = find_profile(cluster_name, cluster, profile_name)
    if not profile_allowed(profile, groups):
        raise InvalidOptions(
            f"profile {profile_name!r} of cluster {cluster_name!r} is only for members of "
            f"the group(s) {', '.join(profile['groups'])}"
        )
    resources = profile_resources(cluster, profile, groups, requested)
    return {
        "clusterName": cluster_name,
        "profile": profile_name,
        "hubUser": hub_user,
        "serverName": server_name,
        "groups": groups,
        "unixUser": unix_user_of(cluster, hub_user),
        "resources": resources.to_spec(),
        "envSecretName": secret_name,
    }


def secret_manifest(metadata: dict, name: str, environment: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {**metadata, "name": name},
        "data": {k: base64.b64encode(str(v).encode()).decode() for k, v in environment.items()},
    }


def notebook_manifest(metadata: dict, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": NOTEBOOK_KIND, "metadata": metadata, "spec": spec}


def owned_by(notebook: dict) -> dict:
    """The patch that makes the Secret the notebook's: it goes when the notebook goes, wherever a
    garbage collector runs, and only then does the operator use it (notebook_secret.py)."""
    reference = {
        "apiVersion": API_VERSION,
        "kind": NOTEBOOK_KIND,
        "name": notebook["metadata"]["name"],
        "uid": notebook["metadata"]["uid"],
    }
    return {"metadata": {"ownerReferences": [reference]}}
