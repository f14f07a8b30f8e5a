#!/usr/bin/env bash
# `make dev-down`: stop everything `make dev` started, by pid file.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=down.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT" || exit 1
STATE=$REPO_ROOT/.dev
# The dev operator as up.sh starts it: only a process with these words is stopped.
OPERATOR="$REPO_ROOT/.venv/bin/batchnotebook-operator --liveness http://127.0.0.1:8082/healthz"

dev/hub.sh stop "$STATE"
stop_pidfile operator "$STATE/run/operator.pid" 15 "$OPERATOR"
dev/sshd.sh stop
dev/sge.sh stop
dev/slurm.sh stop
dev/controlplane.sh stop "$STATE"
