#!/usr/bin/env bash
# `make dev-down`: stop everything `make dev` started, by pid file.
set -uo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT" || exit 1
STATE=$REPO_ROOT/.dev

stop_pid() {
	[[ -f $1 ]] || return 0
	local pid; pid=$(cat "$1")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	rm -f "$1"
}

dev/hub.sh stop "$STATE"
stop_pid "$STATE/run/operator.pid"
dev/sshd.sh stop
dev/sge.sh stop
dev/slurm.sh stop
dev/controlplane.sh stop "$STATE"
