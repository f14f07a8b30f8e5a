"""The Slurm 24.11 site (dev/trixie.sh) as the local stack uses it: running, with the stack's
operator key authorized on its login node; its host key and JWT key for the BatchClusters of
dev/clusters/trixie*.yaml.in and their Secrets."""

from __future__ import annotations

from pathlib import Path

from .paths import REPO
from .processes import run

SCRIPT = REPO / "dev" / "trixie.sh"
JWT_SECRET = "slurm-jwt-trixie"


def trixie(*args: str | Path) -> str:
    return run([SCRIPT, *args]).stdout


def start(operator_public_key: Path) -> None:
    """Starts what is not running and lets the operator's key in as batchnotebook."""
    trixie("start")
    trixie("authorize", operator_public_key)


def host_key() -> str:
    """The login node's host key, which a BatchCluster pins."""
    return trixie("host-key").strip()


def jwt_key() -> Path:
    """Where the site's slurmrestd key is, for the Secret the operator signs tokens with."""
    return Path(trixie("jwt-key-path").strip())
