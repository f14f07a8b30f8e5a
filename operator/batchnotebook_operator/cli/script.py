"""`batchnotebook render`: the job script exactly as the operator's submit() renders it, with
every value that comes from a Secret withheld."""

from __future__ import annotations

import argparse
import sys

from kubernetes_asyncio.client.exceptions import ApiException

from .. import CLUSTERS, GROUP, REPORT_TOKEN_KEY, VERSION
from ..client import make_client
from ..errors import InvalidOptions
from ..handlers.notebooks import report_url
from ..kube import Kube
from ..profiles import Resources, find_profile, resolve, split_options
from ..render import DEFAULT_STOP_BEFORE_WALLTIME_SECONDS, JobRequest, render, stop_after_seconds
from ..schedulers import Scheduler

SAMPLE_USER = "jovyan"
# Names the API server gives a notebook only when it is created.
PLACEHOLDER_NAME = "<notebook>"
PLACEHOLDER_UID = "<uid>"


class NotFound(Exception):
    """A resource the command was asked about does not exist."""


def withheld(source: str) -> str:
    return f"<withheld: from {source}>"


def job_script(
    cluster: dict,
    scheduler: Scheduler,
    *,
    namespace: str,
    name: str,
    uid: str,
    unix_user: str,
    resources: Resources,
    environment: dict[str, str],
) -> str:
    """The script handlers/notebooks.py submit() renders for a notebook, step for step: the same
    additions to the environment, the same template and the same JobRequest."""
    environment = {**environment, "BATCHNOTEBOOK_REPORT_URL": report_url(cluster, namespace, name)}
    stop_after = stop_after_seconds(
        resources.walltime_seconds,
        cluster.get("stopBeforeWalltimeSeconds", DEFAULT_STOP_BEFORE_WALLTIME_SECONDS),
    )
    if stop_after is not None:
        environment["BATCHNOTEBOOK_STOP_AFTER"] = str(stop_after)
    return render(
        cluster.get("jobTemplate") or scheduler.default_template(),
        JobRequest(
            job_name=scheduler.job_name(uid),
            comment=f"batchnotebook:{namespace}/{name}",
            user=unix_user,
            resources=resources,
            environment=environment,
            jupyter_command=list(cluster.get("jupyterCommand", ["jupyterhub-singleuser"])),
            python=cluster.get("python", "python3"),
            prologue=cluster.get("prologue", ""),
            output=cluster.get("jobOutput", "batchnotebook-%j.log"),
        ),
    )


def unix_user_of(cluster: dict, hub_user: str) -> str:
    return cluster.get("userMapping", {}).get("template", "{username}").format(username=hub_user)


def scheduler_of(name: str, cluster: dict) -> Scheduler:
    """The dialect the operator's client for this cluster uses (its job names, its template).
    Building a client opens no connection."""
    return make_client(name, cluster).scheduler


async def cluster_spec(kube: Kube, name: str) -> dict | None:
    try:
        cluster = await kube.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return cluster["spec"]


def sample_script(
    name: str, cluster: dict, profile_name: str, requested: dict, hub_user: str, namespace: str
) -> str:
    """The script a new notebook would get; its name, uid and Secret do not exist yet."""
    resources = resolve(find_profile(name, cluster, profile_name), requested)
    return job_script(
        cluster,
        scheduler_of(name, cluster),
        namespace=namespace,
        name=PLACEHOLDER_NAME,
        uid=PLACEHOLDER_UID,
        unix_user=unix_user_of(cluster, hub_user),
        resources=resources,
        environment={REPORT_TOKEN_KEY: withheld("the notebook Secret")},
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
    expected_user = unix_user_of(cluster, spec["hubUser"])
    if spec["unixUser"] != expected_user:
        raise InvalidOptions(
            f"hub user {spec['hubUser']!r} maps to Unix user "
            f"{expected_user!r}, not {spec['unixUser']!r}"
        )
    resources = resolve(
        find_profile(spec["clusterName"], cluster, spec["profile"]),
        dict(spec.get("resources", {})),
    )
    secret_name = spec["envSecretName"]
    try:
        keys = await kube.secret_data(namespace, secret_name)
    except ApiException as error:
        if error.status == 404:
            raise NotFound(f"there is no Secret {namespace}/{secret_name}") from error
        raise
    return job_script(
        cluster,
        scheduler_of(spec["clusterName"], cluster),
        namespace=namespace,
        name=name,
        uid=notebook["metadata"]["uid"],
        unix_user=spec["unixUser"],
        resources=resources,
        environment={key: withheld(f"Secret {namespace}/{secret_name}") for key in keys},
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
        cluster_name, cluster, profile_name, requested, args.user, args.namespace
    )
    print(
        "batchnotebook: the notebook's name, uid and Secret (the hub's environment, the report "
        "token) do not exist yet and are placeholders; --notebook NAME renders an existing one",
        file=sys.stderr,
    )
    return script
