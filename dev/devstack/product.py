"""Our own images, built from the Dockerfile (both targets) on the local stand-ins, under the
names the chart's values give them here."""

from __future__ import annotations

from .images import build
from .paths import REPO
from .standins import build_python_standin, build_z2jh_hub

OPERATOR_IMAGE = "localhost/batchnotebook/operator:dev"
HUB_IMAGE = "localhost/batchnotebook/hub:dev"


def build_operator_image() -> str:
    build_python_standin()
    build(OPERATOR_IMAGE, REPO / "Dockerfile", REPO, target="operator")
    return OPERATOR_IMAGE


def build_hub_image() -> str:
    build_python_standin()  # the wheel stage
    build_z2jh_hub()
    build(HUB_IMAGE, REPO / "Dockerfile", REPO, target="hub")
    return HUB_IMAGE
