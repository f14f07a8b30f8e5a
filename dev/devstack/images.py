"""Container images built here with buildah (no registry is reachable) and loaded into the node's
containerd. buildah's layer cache lives in the build cache, so an unchanged tree rebuilds
nothing, and an image whose id containerd already has is not loaded again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .paths import BIN, CACHE, REPO
from .processes import log, run

STORAGE = CACHE / "containers"
PAUSE_IMAGE = "localhost/batchnotebook/pause:1"
COREDNS_IMAGE = "localhost/batchnotebook/coredns:1"


def buildah(*args: str | Path, check: bool = True) -> str:
    return run(
        [
            *("buildah", "--root", STORAGE / "storage", "--runroot", STORAGE / "run"),
            *("--storage-driver", "overlay", *args),
        ],
        check=check,
    ).stdout.strip()


def image_id(name: str) -> str | None:
    found = buildah("images", "--noheading", "--no-trunc", "--format", "{{.ID}}", name, check=False)
    return found.split()[0].removeprefix("sha256:") if found else None


def build(
    name: str,
    containerfile: Path,
    context: Path,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
) -> str:
    """Builds (or finds in the layer cache) `name`; returns its image id. RUN steps use this
    machine's network, which reaches the package registries."""
    argv: list[str | Path] = ["bud", "--layers", "--pull=never", "--network", "host"]
    argv += ["-f", containerfile, "-t", name]
    if target:
        argv += ["--target", target]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    buildah(*argv, context)
    built = image_id(name)
    if built is None:
        raise RuntimeError(f"buildah built {name} but does not list it")
    return built


def by_id(name: str) -> str:
    """`name` tagged with its image id too (`repository:<12 hex>`): a Deployment given this name
    rolls its pods when the image changes, as a release's new tag does at a site."""
    wanted = image_id(name)
    if wanted is None:
        raise RuntimeError(f"no image {name} to tag")
    tagged = f"{name.rsplit(':', 1)[0]}:{wanted[:12]}"
    buildah("tag", name, tagged)
    return tagged


def load(socket: Path, name: str) -> None:
    """Imports `name` into the containerd at `socket` unless it has this very image already."""
    wanted = image_id(name)
    if wanted is None:
        raise RuntimeError(f"no image {name} to load")
    ctr = [BIN / "ctr", "--address", socket, "--namespace", "k8s.io"]
    # containerd's CRI names each image by its config digest too (buildah's image id): `name`
    # is this very image when both names point at the same manifest.
    here = _manifest(ctr, name)
    if here is not None and here == _manifest(ctr, f"sha256:{wanted}"):
        return
    with tempfile.TemporaryDirectory(dir=STORAGE) as scratch:
        archive = Path(scratch) / "image.tar"
        buildah("push", name, f"oci-archive:{archive}:{name}")
        run([*ctr, "images", "import", archive])
    log("images", f"{name} loaded into the node")


def _manifest(ctr: list, ref: str) -> str | None:
    """The manifest digest containerd holds under `ref`, if any."""
    listed = run([*ctr, "images", "list", f"name=={ref}"], check=False).stdout.splitlines()
    return listed[1].split()[2] if len(listed) > 1 else None


def _context(name: str, files: Mapping[str, Path]) -> Path:
    """A build context of just `files` (binaries from the cache), refreshed only if they moved."""
    context = STORAGE / "contexts" / name
    context.mkdir(parents=True, exist_ok=True)
    for target, source in files.items():
        copy = context / target
        if not copy.exists() or copy.stat().st_mtime < source.stat().st_mtime:
            shutil.copy2(source, copy)
    return context


def load_node_images(socket: Path) -> None:
    """The node's own images: the pod sandbox and CoreDNS."""
    node_dir = REPO / "dev" / "node"
    build(
        PAUSE_IMAGE,
        node_dir / "Containerfile.pause",
        _context("pause", {"pause": BIN / "pause"}),
    )
    build(
        COREDNS_IMAGE,
        node_dir / "Containerfile.coredns",
        _context("coredns", {"coredns": BIN / "coredns"}),
    )
    for name in (PAUSE_IMAGE, COREDNS_IMAGE):
        load(socket, name)
