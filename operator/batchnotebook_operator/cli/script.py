"""`batchnotebook render`: the job script exactly as the operator's submit() renders it and the
scheduler stores it. It holds no value of the notebook's Secret: the server's environment
reaches the job beside the script (a private file, or slurmrestd's job environment)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import CLUSTERS, GROUP, VERSION
from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import (
    find_profile,
    notebook_resources,
    profile_resources,
    split_options,
    unix_user_of,
)

from ..clients import SchedulerClient, make_client
from ..kube import Kube
from ..render import job_script
from ..schedulers import Scheduler

SAMPLE_USER = "jovyan"
# Names the API server gives a notebook only when it is created.
PLACEHOLDER_NAME = "<notebook>"
PLACEHOLDER_UID = "<uid>"


class NotFound(Exception):
    """A resource the command was asked about does not exist."""


def client_of(name: str, cluster: dict) -> SchedulerClient:
    """The operator's client for this cluster: its dialect (job names, template) and how the
    job gets its environment. Building a client opens no connection."""
    return make_client(name, cluster)


def scheduler_of(name: str, cluster: dict) -> Scheduler:
    return client_of(name, cluster).scheduler


async def cluster_spec(kube: Kube, name: str) -> dict | None:
    try:
        cluster = await kube.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return cluster["spec"]


def sample_script(
    name: str,
    cluster: dict,
    profile_name: str,
    requested: dict,
    hub_user: str,
    namespace: str,
    groups: Iterable[str] = (),
) -> str:
    """The script a new notebook would get; its name and uid do not exist yet."""
    resources = profile_resources(
        cluster, find_profile(name, cluster, profile_name), groups, requested
    )
    client = client_of(name, cluster)
    return job_script(
        cluster,
        client.scheduler,
        namespace=namespace,
        name=PLACEHOLDER_NAME,
        uid=PLACEHOLDER_UID,
        unix_user=unix_user_of(cluster, hub_user),
        resources=resources,
        environment_file=client.environment_in_file,
    )


async def notebook_script(kube: Kube, namespace: str, name: str) -> str:
    """An existing notebook's script as its cluster renders it now, validated as submit() does."""
    notebook = await kube.notebook(namespace, name)
    if notebook is None:
        raise NotFound(f"there is no BatchNotebook {namespace}/{name}")
    spec = notebook["spec"]
    cluster = await cluster_spec(kube, spec["clusterName"])
    if cluster is None:
        raise NotFound(f"there is no BatchCluster named {spec['clusterName']!r}")
    resources = notebook_resources(spec["clusterName"], cluster, spec)
    client = client_of(spec["clusterName"], cluster)
    return job_script(
        cluster,
        client.scheduler,
        namespace=namespace,
        name=name,
        uid=notebook["metadata"]["uid"],
        unix_user=spec["unixUser"],
        resources=resources,
        environment_file=client.environment_in_file,
    )


async def render_command(kube: Kube, args: argparse.Namespace) -> str:
    if args.notebook:
        return await notebook_script(kube, args.namespace, args.notebook)
    # The same checks, in the same order, as the spawner's validated_spec().
    cluster_name, profile_name, requested = split_options(
        {"cluster": args.cluster, "profile": args.profile, **dict(args.options)}
    )
    cluster = await cluster_spec(kube, cluster_name)
    if cluster is None:
        raise InvalidOptions(f"there is no cluster named {cluster_name!r}")
    script = sample_script(
        cluster_name, cluster, profile_name, requested, args.user, args.namespace, args.groups
    )
    print(
        "batchnotebook: the notebook's name and uid do not exist yet and are placeholders; "
        "--notebook NAME renders an existing one",
        file=sys.stderr,
    )
    return script
