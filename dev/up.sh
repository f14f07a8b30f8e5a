#!/usr/bin/env bash
# `make dev`: install what is missing, then run the product as sites do, on a real Kubernetes
# node in .dev: our chart's operator and Zero to JupyterHub in pods (dev/devstack/dev.py).
# Idempotent: re-running it rebuilds only what changed and rolls the pods whose image changed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=up.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
STATE=$REPO_ROOT/.dev

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "Python environment (.venv)"
BATCHNOTEBOOK_SKIP_HUB5=1 dev/python.sh

say "Kubernetes (API server, etcd, kubelet, containerd, ...) and helm: built once, cached in ~/.cache"
dev/controlplane.sh build
dev/node.sh build
dev/helm.sh build

say "Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd)"
dev/slurm.sh install
dev/slurm.sh start

say "Slurm 24.11 site (Debian trixie root filesystem, nodes tx-ctl, tx-login, tx-c1, tx-c2)"
dev/trixie.sh build
dev/trixie.sh start

say "Grid Engine (sge_qmaster, sge_execd)"
dev/sge.sh install
dev/sge.sh start

say "Emulators of PBS Pro, Torque, Moab, LSF and HTCondor (tests/emulators)"
dev/emulators.sh install

# The operator of an older `make dev` ran on this machine: it makes way for the pod.
stop_pidfile operator "$STATE/run/operator.pid" 30 \
	"$REPO_ROOT/.venv/bin/batchnotebook-operator --liveness http://127.0.0.1:8082/healthz"

say "The node, the operator's chart, Zero to JupyterHub, the BatchClusters (dev/devstack/dev.py)"
PYTHONPATH=dev .venv/bin/python -m devstack dev up
