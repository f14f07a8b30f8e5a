"""The product installed on a stack's node the way sites install it: our chart's operator, from
the image of our Dockerfile, reaching this machine's Slurm through a login node (dev/sshd.sh on
the node's network); and Zero to JupyterHub's chart (from outside our tree) with
charts/batchnotebook/examples/z2jh-values.yaml plus only what a one-node cluster needs. The
deployment tests install with it (and `make dev` is to, issue 12 item 7)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import yaml

from . import trixie
from .images import by_id, load
from .node import Node
from .paths import BIN, REPO
from .processes import Daemon, listens, run
from .product import build_hub_image, build_operator_image
from .standins import build_proxy, build_singleuser, vendor_z2jh

RELEASE, SYSTEM = "batchnotebook", "batchnotebook-system"
OPERATOR_SERVICE = f"{RELEASE}-operator"
HUB_NAMESPACE = "jupyterhub"
NOTEBOOKS = f"{HUB_NAMESPACE}-notebooks"  # the chart's notebook namespace for that hub
PROXY_NODE_PORT = 30800
Z2JH_VALUES = REPO / "charts/batchnotebook/examples/z2jh-values.yaml"
JWT_KEY = Path("/var/spool/slurm/jwt_hs256.key")  # dev/slurm.sh's: slurmrestd checks tokens with it
REST_USER = "slurmrest"  # dev/slurm.sh's: slurmrestd refuses to run as root
SLURMREST_PORT = 6820  # Slurm's usual port, on the node network's address (not loopback's)


def helm(node: Node, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([BIN / "helm", "--kubeconfig", node.state / "kubeconfig", *args], check=check)


def sshd(node: Node, *args: str) -> str:
    """The login node of the node's stack: an sshd where pods reach this machine."""
    env = {
        **os.environ,
        "BATCHNOTEBOOK_STATE": str(node.state),
        "BATCHNOTEBOOK_SSHD_PORT": str(sshd_port(node)),
        "BATCHNOTEBOOK_SSHD_ADDRESS": node.network.host_address,
    }
    return run([REPO / "dev/sshd.sh", *args], env=env).stdout


def sshd_port(node: Node) -> int:
    return node.api_port + 22


def ssh_connection(node: Node) -> dict:
    """A BatchCluster's connection to the login node, for an operator in a pod."""
    return {
        "type": "ssh",
        "ssh": {
            "host": node.network.host_address,
            "port": sshd_port(node),
            "user": "batchnotebook",
            "hostKey": sshd(node, "host-key").strip(),
            "privateKeySecret": {"name": "hpc-ssh"},
        },
    }


def slurmrestd(node: Node) -> Daemon:
    """Slurm's REST endpoint where pods reach it: a slurmrestd of the node's stack on this
    machine's end of the veth (dev/slurm.sh's own listens on loopback only)."""
    address = slurmrestd_address(node)
    return Daemon(
        "slurmrestd",
        ["/usr/sbin/slurmrestd", "-a", "rest_auth/jwt", address],
        node.state / "run",
        node.state / "logs",
        marker=address,
        env={"SLURM_JWT": "daemon"},
        prefix=["setpriv", f"--reuid={REST_USER}", f"--regid={REST_USER}", "--init-groups", "--"],
    )


def slurmrestd_address(node: Node) -> str:
    # Slurm's usual port, on an address of the node's network only (the machine's own slurmrestd
    # has 127.0.0.1:6820).
    return f"{node.network.host_address}:{SLURMREST_PORT}"


def slurmrest_connection(node: Node) -> dict:
    """A BatchCluster's connection to slurmrestd, for an operator in a pod."""
    return {
        "type": "slurmrest",
        "slurmrest": {
            "url": f"http://{slurmrestd_address(node)}",
            "jwtKeySecret": {"name": "slurm-jwt"},
            "queryUser": "batchnotebook",
            "homeDirectory": "/home/{user}",
        },
    }


def install_operator(node: Node, *values: str) -> None:
    """`helm upgrade --install` of our chart, `--set` VALUES too, with the operator's image built
    here, its key for the login node (started here) in the Secret `hpc-ssh` and Slurm's JWT key
    in `slurm-jwt` (for slurmrestd, started here too); the same key let in on the Slurm 24.11
    site's login node (dev/trixie.sh, started here too), whose JWT key goes in
    `slurm-jwt-trixie`. Run again, it changes only what changed: a new image rolls the operator's
    pod."""
    run([REPO / "dev/helm.sh", "build"])
    image = by_id(build_operator_image())
    load(node.socket, image)
    sshd(node, "install")
    sshd(node, "start")
    rest = slurmrestd(node)
    rest.start()
    rest.wait_ready(lambda: listens(node.network.host_address, SLURMREST_PORT), 30)
    apply_object(node, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}})
    trixie.start(node.state / "sshd" / "id_ed25519.pub")
    apply_secret(node, "hpc-ssh", "ssh-privatekey", node.state / "sshd" / "id_ed25519")
    apply_secret(node, "slurm-jwt", "jwt_hs256.key", JWT_KEY)
    apply_secret(node, trixie.JWT_SECRET, "jwt_hs256.key", trixie.jwt_key())
    repository, tag = image.rsplit(":", 1)
    settings = [
        f"image.repository={repository}",
        f"image.tag={tag}",
        "image.pullPolicy=Never",
        f"hub.namespace={HUB_NAMESPACE}",
        "secrets.sshKeys={hpc-ssh}",
        f"secrets.jwtKeys={{slurm-jwt,{trixie.JWT_SECRET}}}",
        *values,
    ]
    helm(
        node,
        *("upgrade", "--install", RELEASE, REPO / "charts/batchnotebook", "-n", SYSTEM),
        *("--wait", "--timeout", "5m"),
        *(word for setting in settings for word in ("--set", setting)),
    )


def apply_object(node: Node, manifest: dict) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def apply_secret(node: Node, name: str, key: str, path: Path) -> None:
    """The operator's Secret NAME holding the file at PATH under KEY (sent on stdin: a key
    never goes on a command line)."""
    data = base64.b64encode(path.read_bytes()).decode()
    apply_object(node, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": SYSTEM}, "data": {key: data},
    })  # fmt: skip


def uninstall_operator(node: Node) -> None:
    # Servers still there are deleted while the operator runs, which cancels their jobs
    # (uninstalled first, it would leave them running with no notebook).
    node.kubectl("delete", "bnb", "--all", "--all-namespaces", "--timeout=180s", check=False)
    helm(node, "uninstall", RELEASE, "-n", SYSTEM, "--wait", check=False)
    stop_login_node(node)


def stop_login_node(node: Node) -> None:
    """The sshd and slurmrestd that install_operator started for the node's stack (a run that
    was killed leaves them listening on the node's network, where the next one would start)."""
    sshd(node, "stop")
    slurmrestd(node).stop()


# The service whose token scripts and tests use (HUB_API_TOKEN in .dev/env): an administrator.
ADMIN_SERVICE = "dev-admin"
ADMIN_SCOPES = [
    "admin:users", "admin:servers", "admin-ui", "list:users", "read:users", "servers",
    "access:servers", "tokens", "proxy", "shutdown",
]  # fmt: skip


def z2jh_overrides(url: str, token: str, password: str, pod_profiles: list[dict]) -> dict:
    """What a one-node cluster needs beyond the example values: the images built here, the proxy
    on a NodePort (URL is the hub's public address through it), the hub's database on a hostPath
    volume (hub_db_volume), no volumes for pod servers, a service whose TOKEN may do anything
    as an administrator (ADMIN_SCOPES), the dummy authenticator with PASSWORD, and the pod
    profiles. install_z2jh adds the hub's image."""
    return {
        "hub": {
            # sqlite on a volume: a restarted hub pod keeps its users' servers.
            "db": {"type": "sqlite-pvc"},
            "config": {
                "JupyterHub": {"authenticator_class": "dummy"},
                "DummyAuthenticator": {"password": password},
                "Authenticator": {"allow_all": True},
                "BatchNotebookSpawner": {"hub_connect_url": url, "pod_profiles": pod_profiles},
            },
            "services": {ADMIN_SERVICE: {"apiToken": token}},
            "loadRoles": {ADMIN_SERVICE: {"services": [ADMIN_SERVICE], "scopes": ADMIN_SCOPES}},
        },
        "proxy": {
            "service": {"type": "NodePort", "nodePorts": {"http": PROXY_NODE_PORT}},
            "chp": {"image": {"pullPolicy": "Never"}},
        },
        "singleuser": {
            "image": {"pullPolicy": "Never"},
            "storage": {"type": "none"},  # no storage provisioner on the node
            "cloudMetadata": {"blockWithIptables": False},
        },
    }  # fmt: skip


def hub_db_volume(node: Node) -> dict:
    """A PersistentVolume on the node for the hub's database claim (no provisioner here), in a
    directory the hub's user (1000) owns."""
    path = node.dir / "hub-db"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, 1000, 1000)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "hub-db"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


def install_z2jh(node: Node, overrides: dict) -> None:
    """`helm upgrade --install` of Zero to JupyterHub with the example values and OVERRIDES
    (z2jh_overrides; written 0600: they hold the token and the password), with the hub's image
    built here: a new one rolls the hub's pod."""
    apply_object(node, hub_db_volume(node))
    hub = by_id(build_hub_image())
    for image in (hub, build_proxy(), build_singleuser()):
        load(node.socket, image)
    repository, tag = hub.rsplit(":", 1)
    image = {"name": repository, "tag": tag, "pullPolicy": "Never"}
    values = node.state / "z2jh-overrides.yaml"
    values.touch(mode=0o600)
    values.chmod(0o600)
    values.write_text(yaml.safe_dump({**overrides, "hub": {**overrides["hub"], "image": image}}))
    helm(
        node,
        *("upgrade", "--install", "jupyterhub", vendor_z2jh() / "jupyterhub"),
        *("-n", HUB_NAMESPACE, "--create-namespace", "--wait", "--timeout", "8m"),
        *("-f", Z2JH_VALUES, "-f", values),
    )


def uninstall_z2jh(node: Node) -> None:
    helm(node, "uninstall", "jupyterhub", "-n", HUB_NAMESPACE, "--wait", check=False)
    (node.state / "z2jh-overrides.yaml").unlink(missing_ok=True)  # it holds the token
