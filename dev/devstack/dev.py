"""`make dev` (python -m devstack dev up|down): the product as sites run it, on the node of the
stack in .dev. Our chart's operator and Zero to JupyterHub's hub and proxy run in pods; the
BatchClusters of dev/clusters/ reach this machine's Slurm, Grid Engine and emulators the way a
site's are reached (SSH to a login node, slurmrestd); users come in through the proxy's
NodePort. Run again, it changes only what changed: new images roll their pods."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from pathlib import Path

from . import cluster, controlplane, trixie
from .deploy import (
    ADMIN_SERVICE,
    PROXY_NODE_PORT,
    SYSTEM,
    install_operator,
    install_z2jh,
    slurmrestd_address,
    sshd,
    sshd_port,
    z2jh_overrides,
)
from .node import Node
from .paths import BIN, REPO
from .processes import log

STATE = REPO / ".dev"
API_PORT = 16443
CLUSTERS = REPO / "dev" / "clusters"
POD_PROFILES = REPO / "dev" / "pod-profiles.json"
USERS = ("alice", "bob")  # dev/slurm.sh's accounts: the dummy authenticator lets them in
KEPT = ("HUB_API_TOKEN", "DEV_PASSWORD")  # secrets a re-run keeps, so that logins survive it


def up(state: Path = STATE) -> None:
    began = time.monotonic()
    forget_nodeless_state(state)
    log("dev", "Kubernetes: control plane and node (a cold start builds the node's images)")
    node = cluster.up(state, API_PORT)
    log("dev", "operator: our chart, its image from the Dockerfile")
    install_operator(node, "hub.rbac.kubeSpawner=true")
    settings = kept_settings(state / "env")
    hub_url = f"http://{node.network.node_address}:{PROXY_NODE_PORT}"
    log("dev", f"BatchClusters of {CLUSTERS.relative_to(REPO)}/")
    words = placeholders(node, hub_url)
    for template in sorted(CLUSTERS.glob("*.yaml.in")):
        apply_replacing(node, render(template, words))
    log("dev", "hub: Zero to JupyterHub with charts/batchnotebook/examples/z2jh-values.yaml")
    profiles = json.loads(POD_PROFILES.read_text())
    overrides = z2jh_overrides(
        hub_url, settings["HUB_API_TOKEN"], settings["DEV_PASSWORD"], profiles
    )
    install_z2jh(node, overrides)
    write_env(state, hub_url, settings)
    log("dev", f"ready in {time.monotonic() - began:.0f} s")
    print(summary(hub_url, settings["DEV_PASSWORD"]), flush=True)


def down(state: Path = STATE) -> None:
    cluster.down(state)


def forget_nodeless_state(state: Path) -> None:
    """A .dev of an older `make dev` ran its API server without a node, with another Service
    range that its etcd keeps: the node's Services cannot be made there. Its objects go."""
    if (state / "controlplane").exists() and not (state / "node" / "index").exists():
        log("dev", f"{state}: made without a node by an older make dev; starting it afresh")
        controlplane.stop(state)
        shutil.rmtree(state / "controlplane")


def kept_settings(env: Path) -> dict[str, str]:
    """The token and password of an earlier run (from its env file), else new ones."""
    earlier = {}
    if env.exists():
        for line in env.read_text().splitlines():
            found = re.fullmatch(r'(?:export )?([A-Z_]+)="?([A-Za-z0-9_-]+)"?', line.strip())
            if found:
                earlier[found[1]] = found[2]
    fresh = {"HUB_API_TOKEN": secrets.token_hex(24), "DEV_PASSWORD": secrets.token_hex(8)}
    return {key: earlier.get(key, fresh[key]) for key in KEPT}


def placeholders(node: Node, hub_url: str) -> dict[str, str]:
    """What the @WORDS@ of dev/clusters/ stand for on this stack."""
    return {
        "@HUB_URL@": hub_url,
        "@LOGIN_HOST@": node.network.host_address,
        "@LOGIN_PORT@": str(sshd_port(node)),
        "@SSH_HOST_KEY@": sshd(node, "host-key").strip(),
        "@SLURMREST_ADDRESS@": slurmrestd_address(node),
        "@TRIXIE_HOST_KEY@": trixie.host_key(),
        "@REPO@": str(REPO),
    }


def render(template: Path, words: dict[str, str]) -> str:
    text = template.read_text()
    for word, value in words.items():
        text = text.replace(word, value)
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise RuntimeError(f"{template}: no value for {', '.join(left)}")
    return text


def apply_replacing(node: Node, manifest: str) -> None:
    """Creates the object, or replaces the one there whole: a field dropped from the file goes
    (a BatchCluster in use cannot be deleted and created again)."""
    there = node.kubectl("get", "-f", "-", "--ignore-not-found", "-o", "name", input=manifest)
    node.kubectl("replace" if there else "create", "-f", "-", input=manifest)


def write_env(state: Path, hub_url: str, settings: dict[str, str]) -> None:
    """STATE/env, 0600 (it holds the admin token): `source .dev/env` sets up a shell."""
    lines = {
        "HUB_URL": hub_url,
        **settings,
        "KUBECONFIG": str(state / "kubeconfig"),
        # Where the operator runs and keeps its key Secrets: the admin CLI reads them there.
        "BATCHNOTEBOOK_NAMESPACE": SYSTEM,
        "PATH": f"{REPO / '.venv' / 'bin'}:{BIN}:$PATH",
    }
    env = state / "env"
    env.touch(mode=0o600)
    env.chmod(0o600)
    env.write_text("".join(f'export {key}="{value}"\n' for key, value in lines.items()))


def summary(hub_url: str, password: str) -> str:
    return f"""
The local stack is running: the operator (our chart) and Zero to JupyterHub in pods on a real
node, this machine's Slurm, Grid Engine and scheduler emulators behind a login node.
  Hub:        {hub_url}   (log in as {" or ".join(USERS)}, password: {password})
  Settings:   source .dev/env   (HUB_URL, HUB_API_TOKEN of the service {ADMIN_SERVICE}, \
KUBECONFIG, DEV_PASSWORD; kubectl, helm, batchnotebook on PATH)
  Pods:       kubectl get pods -A    Notebooks: kubectl get bnb -A    Clusters: kubectl get bcl
  Logs:       kubectl -n batchnotebook-system logs deploy/batchnotebook-operator
              kubectl -n jupyterhub logs deploy/hub
  Stop:       make dev-down
"""
