#!/usr/bin/env bash
# JupyterHub and configurable-http-proxy for one stack.
#
#   dev/hub.sh install        configurable-http-proxy from npm into the cache
#   dev/hub.sh start STATE    start the proxy and the hub (settings from STATE/env); idempotent
#   dev/hub.sh stop STATE     stop them by their pid files
#   dev/hub.sh restart-hub STATE   restart only the hub (the proxy and the servers stay)
set -euo pipefail

CHP_VERSION=5.3.0
CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHP=$CACHE/node/chp-$CHP_VERSION/node_modules/.bin/configurable-http-proxy

log() { printf 'hub: %s\n' "$*" >&2; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_http() {  # url seconds
	local deadline=$((SECONDS + $2))
	until curl -fs -o /dev/null "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.3
	done
}

stop_pid() {  # pidfile
	alive "$1" || { rm -f "$1"; return 0; }
	local pid; pid=$(cat "$1")
	kill -TERM "$pid"
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	rm -f "$1"
}

cmd_install() {
	[[ -x $CHP ]] && return 0
	log "installing configurable-http-proxy $CHP_VERSION"
	mkdir -p "$CACHE/node/chp-$CHP_VERSION"
	npm install --silent --no-audit --no-fund --prefix "$CACHE/node/chp-$CHP_VERSION" \
		"configurable-http-proxy@$CHP_VERSION" >/dev/null
}

load_env() {
	STATE=$(cd "$1" && pwd)
	set -a
	# shellcheck disable=SC1091
	source "$STATE/env"
	set +a
	export STATE
	mkdir -p "$STATE/run" "$STATE/logs"
}

start_proxy() {
	alive "$STATE/run/proxy.pid" && return 0
	CONFIGPROXY_AUTH_TOKEN=$CONFIGPROXY_AUTH_TOKEN setsid "$CHP" \
		--ip 127.0.0.1 --port "$PUBLIC_PORT" \
		--api-ip 127.0.0.1 --api-port "$PROXY_API_PORT" \
		--default-target "http://127.0.0.1:$HUB_PORT" --error-target "http://127.0.0.1:$HUB_PORT/hub/error" \
		</dev/null >>"$STATE/logs/proxy.log" 2>&1 &
	echo $! >"$STATE/run/proxy.pid"
	# The proxy's public port answers (with an error page) once it is up.
	local deadline=$((SECONDS + 30))
	until curl -s -o /dev/null "http://127.0.0.1:$PUBLIC_PORT/"; do
		((SECONDS < deadline)) || { tail -n 20 "$STATE/logs/proxy.log" >&2; exit 1; }
		sleep 0.2
	done
}

start_hub() {
	alive "$STATE/run/hub.pid" && return 0
	rm -f "$STATE/run/hub.pid"
	# The hub's cwd is the state dir (it may write files there); no shell stays around it.
	pushd "$STATE" >/dev/null
	setsid "$REPO_ROOT/${HUB_VENV:-.venv}/bin/jupyterhub" -f "$REPO_ROOT/dev/jupyterhub_config.py" \
		</dev/null >>"$STATE/logs/hub.log" 2>&1 &
	echo $! >"$STATE/run/hub.pid"
	popd >/dev/null
	if ! wait_http "http://127.0.0.1:$PUBLIC_PORT/hub/health" 90; then
		tail -n 40 "$STATE/logs/hub.log" >&2
		log "the hub did not come up"
		exit 1
	fi
}

cmd_start() {
	cmd_install
	load_env "$1"
	start_proxy
	start_hub
}

cmd_stop() {
	local state=$1
	stop_pid "$state/run/hub.pid"
	stop_pid "$state/run/proxy.pid"
}

cmd_restart_hub() {
	load_env "$1"
	stop_pid "$STATE/run/hub.pid"
	start_hub
}

case ${1:-} in
	install) cmd_install ;;
	start) cmd_start "${2:?STATE}" ;;
	stop) cmd_stop "${2:?STATE}" ;;
	restart-hub) cmd_restart_hub "${2:?STATE}" ;;
	*) sed -n '3,7s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
