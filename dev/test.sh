#!/usr/bin/env bash
# `make test`: install what is missing, then run lint and the whole suite against real components
# (the suite starts its own API server in .test/, shares the system Slurm).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

dev/python.sh
dev/controlplane.sh build
dev/node.sh build
dev/helm.sh build
dev/toxiproxy.sh build
dev/slurm.sh install
dev/slurm.sh start
dev/trixie.sh build
dev/trixie.sh start
dev/sge.sh install
dev/sge.sh start
dev/emulators.sh install
dev/sshd.sh install
dev/hub.sh install
dev/browser.sh install

state=${BATCHNOTEBOOK_TEST_STATE:-.test}
cleanup() {
	# What pytest would have stopped, had it not been killed: the process hubs, the control
	# plane, and the node's stack of tests/integration/node/.
	PYTHONPATH=dev .venv/bin/python -m devstack stop-hubs "$state" || true
	PYTHONPATH=dev .venv/bin/python -m devstack down "$state" || true
	PYTHONPATH=dev .venv/bin/python -m devstack down "$state-node" || true
}
trap cleanup EXIT

dev/lint.sh
mkdir -p test-artifacts
.venv/bin/python -m pytest -q -ra --junitxml=test-artifacts/junit.xml "$@" tests
