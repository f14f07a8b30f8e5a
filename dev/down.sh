#!/usr/bin/env bash
# `make dev-down`: stop everything `make dev` started: the node and its containers, the login
# node, the control plane, then Grid Engine, Slurm and the Slurm 24.11 site (dev/trixie.sh).
set -uo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT" || exit 1

PYTHONPATH=dev .venv/bin/python -m devstack dev down
dev/sge.sh stop
dev/slurm.sh stop
dev/trixie.sh stop
