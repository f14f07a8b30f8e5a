"""Local stand-ins for the registry images our Dockerfile and Zero to JupyterHub name (no registry
is reachable here), built under the very names they stand in for, so that the Dockerfiles build
unchanged. The README lists where each differs from the real image."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .images import STORAGE, build, buildah, image_id
from .paths import REPO
from .processes import log, run

DEBIAN = "docker.io/library/debian:bookworm-slim"
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# The machine's own certificate authorities (an egress proxy's among them): builds inside the
# images reach the package registries through it.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
Z2JH_VERSION = "4.4.0"
CHP_VERSION = "5.2.0"  # Zero to JupyterHub 4.4.0's proxy.chp.image.tag
JUPYTERHUB_VERSION = "5.5.0"  # in Zero to JupyterHub 4.4.0's hub image: the servers match it
JUPYTERLAB_VERSION = "4.5.1"
BUILD_PACKAGES = "build-essential python3-dev libpq-dev libcurl4-openssl-dev libssl-dev"


@dataclass(frozen=True)
class StandIn:
    name: str
    containerfile: str  # in dev/images
    build_args: dict[str, str] = field(default_factory=dict)


PYTHON_STANDINS = [
    StandIn("docker.io/library/python:3.11-slim-bookworm", "python.Containerfile"),
    StandIn("docker.io/library/python:3.12-slim-bookworm", "python.Containerfile"),
    StandIn(
        "docker.io/library/python:3.12-bookworm",
        "python.Containerfile",
        {"EXTRA_PACKAGES": BUILD_PACKAGES},
    ),
]


def debian_base() -> str:
    """debian:bookworm-slim from mmdebstrap, trusting this machine's certificate authorities.
    Rebuilt only when the CAs change (it is labelled with their digest)."""
    cas = sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in cas)).hexdigest()[:16]
    label = buildah(
        "inspect",
        "--format",
        '{{index .ImageAnnotations "batchnotebook.cas"}}',
        DEBIAN,
        check=False,
    )
    if image_id(DEBIAN) and label == digest:
        return DEBIAN
    log("images", f"building the {DEBIAN} stand-in with mmdebstrap")
    STORAGE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STORAGE) as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        hooks = [f"copy-in {path} /usr/local/share/ca-certificates/" for path in cas]
        hooks.append('chroot "$1" update-ca-certificates')
        run(
            [
                *("mmdebstrap", "--variant=minbase", "--include=ca-certificates"),
                *(f"--customize-hook={hook}" for hook in hooks),
                *(
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                ),
                *("bookworm", rootfs, *MIRRORS),
            ]
        )
        container = buildah("from", "scratch")
        try:
            buildah("add", container, rootfs, "/")
            buildah(
                "config", "--cmd", "bash", "--annotation", f"batchnotebook.cas={digest}", container
            )
            buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                container,
            )
            buildah("commit", "--rm", container, DEBIAN)
        except Exception:
            buildah("rm", container, check=False)
            raise
    return DEBIAN


class Z2JHMissing(RuntimeError):
    """Zero to JupyterHub's source is not on this machine (and no registry serves its images)."""


def vendor_z2jh() -> Path:
    """Zero to JupyterHub's source: its chart and hub image (test data, never in our tree)."""
    candidates = [
        os.environ.get("BATCHNOTEBOOK_Z2JH_DIR", ""),
        str(REPO.parent / "shared" / "vendor" / f"zero-to-jupyterhub-k8s-{Z2JH_VERSION}"),
        f"/work/shared/vendor/zero-to-jupyterhub-k8s-{Z2JH_VERSION}",
    ]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "jupyterhub" / "Chart.yaml").exists():
            return Path(candidate)
    raise Z2JHMissing(
        f"Zero to JupyterHub {Z2JH_VERSION} not found: set BATCHNOTEBOOK_Z2JH_DIR to a checkout "
        f"of github.com/jupyterhub/zero-to-jupyterhub-k8s at tag {Z2JH_VERSION}"
    )


IMAGES = REPO / "dev" / "images"


def build_python_standin(standin: StandIn = PYTHON_STANDINS[0]) -> str:
    """One python stand-in (by default the slim 3.11 our Dockerfile uses); returns its name."""
    debian_base()
    build(standin.name, IMAGES / standin.containerfile, IMAGES, build_args=standin.build_args)
    return standin.name


def build_z2jh_hub() -> str:
    """Zero to JupyterHub's hub image from its own source, on the python stand-ins."""
    for standin in PYTHON_STANDINS:
        build_python_standin(standin)
    hub = vendor_z2jh() / "images" / "hub"
    name = f"quay.io/jupyterhub/k8s-hub:{Z2JH_VERSION}"
    build(name, hub / "Dockerfile", hub)
    return name


def build_proxy() -> str:
    """configurable-http-proxy at the version Zero to JupyterHub's chart names."""
    debian_base()
    name = f"quay.io/jupyterhub/configurable-http-proxy:{CHP_VERSION}"
    build(
        name,
        IMAGES / "configurable-http-proxy.Containerfile",
        IMAGES,
        build_args={"CHP_VERSION": CHP_VERSION},
    )
    return name


def build_singleuser() -> str:
    """The single-user image of pod profiles, with the hub's JupyterHub version."""
    build_python_standin()
    name = f"quay.io/jupyterhub/k8s-singleuser-sample:{Z2JH_VERSION}"
    build(
        name,
        IMAGES / "singleuser.Containerfile",
        IMAGES,
        build_args={
            "JUPYTERHUB_VERSION": JUPYTERHUB_VERSION,
            "JUPYTERLAB_VERSION": JUPYTERLAB_VERSION,
        },
    )
    return name
