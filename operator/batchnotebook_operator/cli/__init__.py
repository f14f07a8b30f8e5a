"""`batchnotebook`: the admin's command line. `render` prints the job script a user and profile
would get, `doctor` checks each BatchCluster end to end, `status` joins notebooks with what the
scheduler says of their jobs. It talks to the API server like kubectl and to the schedulers
through the operator's own clients, so it needs the Secrets the operator reads (run it where an
admin has them, or `kubectl exec` into the operator's pod)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api.errors import InvalidOptions

from ..kube import Kube
from . import doctor, script, status

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def option_pair(text: str) -> tuple[str, str]:
    """`--set key=value`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    return key.strip(), value.strip()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="batchnotebook", description=__doc__)
    top.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    top.add_argument("--context", help="kubeconfig context (default: the current one)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render",
        help="print the job script a user and profile would get",
        description="Print the job script the operator would submit, from the live BatchCluster. "
        "It holds no Secret value (the job gets those beside it). Options are validated as the "
        "spawner does (exit 2 if not).",
    )
    render.add_argument("cluster", nargs="?", help="BatchCluster name")
    render.add_argument("profile", nargs="?", help="profile name")
    render.add_argument(
        "--user", default=script.SAMPLE_USER, help="hub user (default: %(default)s)"
    )
    render.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        help="a JupyterHub group of the user, for the profile's groupOverrides (repeatable)",
    )
    render.add_argument(
        "--set",
        dest="options",
        metavar="KEY=VALUE",
        type=option_pair,
        action="append",
        default=[],
        help="a user option (cpus, memory, gpus, walltime, partition, account, qos); repeatable",
    )
    render.add_argument(
        "--notebook",
        metavar="NAME",
        help="instead of CLUSTER PROFILE: the script of this existing BatchNotebook, as the "
        "cluster's current spec renders it",
    )
    render.add_argument("-n", "--namespace", help="the notebook's namespace")

    check = commands.add_parser(
        "doctor",
        help="check clusters: connection, version, templates, limits, callback URL, polling",
        description="One line per check (OK, WARN, FAIL); exits 1 if any check FAILs.",
    )
    check.add_argument("clusters", nargs="*", metavar="CLUSTER", help="default: every cluster")

    table = commands.add_parser(
        "status", help="notebooks joined with their jobs' live scheduler state"
    )
    scope = table.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    table.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return top


def default_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use: the context's, the pod's own in a cluster, or default."""
    try:
        contexts, current = config.list_kube_config_contexts(kubeconfig)
    except (config.ConfigException, OSError):
        if IN_CLUSTER_NAMESPACE.exists():
            return IN_CLUSTER_NAMESPACE.read_text().strip()
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace") or "default"


async def connect(kubeconfig: str | None, context: str | None) -> Kube:
    """Like kubectl: the kubeconfig if there is one, else the pod's service account."""
    configuration = client.Configuration()
    kubeconfig_exists = Path("~/.kube/config").expanduser().exists()
    if kubeconfig or context or os.environ.get("KUBECONFIG") or kubeconfig_exists:
        await config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    else:
        config.load_incluster_config(client_configuration=configuration)
    return Kube(client.ApiClient(configuration))


async def run(args: argparse.Namespace) -> int:
    kube = await connect(args.kubeconfig, args.context)
    try:
        if args.command == "render":
            print(await script.render_command(kube, args), end="")
            return 0
        if args.command == "doctor":
            return await doctor.doctor_command(kube, args.clusters)
        return await status.status_command(kube, args)
    finally:
        await kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "namespace", "") is None and not getattr(args, "all_namespaces", False):
        args.namespace = default_namespace(args.kubeconfig, args.context)
    if args.command == "render" and (args.notebook is None) == (args.cluster is None):
        parser().error("render needs CLUSTER PROFILE or --notebook NAME")
    if args.command == "render" and args.cluster is not None and args.profile is None:
        parser().error("render needs a PROFILE after the CLUSTER")
    logging.basicConfig(level=logging.WARNING, format="batchnotebook: %(message)s")
    try:
        return asyncio.run(run(args))
    except InvalidOptions as error:
        print(f"Invalid server options: {error}", file=sys.stderr)
        return 2
    except script.NotFound as error:
        print(f"batchnotebook: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(f"batchnotebook: the API server said {error.status} {error.reason}", file=sys.stderr)
        return 1
