#!/usr/bin/env bash
# JupyterHub and configurable-http-proxy for one stack.
#
#   dev/hub.sh install        configurable-http-proxy from npm into the cache
#   dev/hub.sh start STATE    start the proxy, the hub and the idle culler (settings from
#                             STATE/env; IDLE_CULL_TIMEOUT seconds, default 3600, 0: no culler)
#   dev/hub.sh stop STATE     stop them by their pid files
#   dev/hub.sh restart-hub STATE   restart only the hub (the proxy, culler and servers stay)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=hub

CHP_VERSION=5.3.0
CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHP=$CACHE/node/chp-$CHP_VERSION/node_modules/.bin/configurable-http-proxy
HUB_CONFIG=$REPO_ROOT/dev/jupyterhub_config.py

# What the pid files must point at (see pid_runs in lib.sh): the proxy runs $CHP, the hub runs
# with our configuration file (from .venv or .venv-hub5).
PROXY_ID=$CHP
HUB_ID="-f $HUB_CONFIG"
CULLER_ID="-m jupyterhub_idle_culler"

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
	# The culler's token, made once per state dir (older env files lack it).
	if [[ -z ${IDLE_CULLER_TOKEN:-} ]]; then
		IDLE_CULLER_TOKEN=$(openssl rand -hex 24)
		echo "IDLE_CULLER_TOKEN=$IDLE_CULLER_TOKEN" >>"$STATE/env"
		export IDLE_CULLER_TOKEN
	fi
}

start_proxy() {
	local pidfile=$STATE/run/proxy.pid
	pidfile_runs "$pidfile" "$PROXY_ID" && return 0
	CONFIGPROXY_AUTH_TOKEN=$CONFIGPROXY_AUTH_TOKEN spawn "$pidfile" "$STATE/logs/proxy.log" "$CHP" \
		--ip 127.0.0.1 --port "$PUBLIC_PORT" \
		--api-ip 127.0.0.1 --api-port "$PROXY_API_PORT" \
		--default-target "http://127.0.0.1:$HUB_PORT" --error-target "http://127.0.0.1:$HUB_PORT/hub/error"
	# The proxy's public port answers (with an error page) once it is up.
	wait_ready 30 pidfile_runs "$pidfile" "$PROXY_ID" -- curl -s -o /dev/null "http://127.0.0.1:$PUBLIC_PORT/" ||
		die_with_logs "the proxy did not come up" "$STATE/logs/proxy.log"
}

start_hub() {
	local pidfile=$STATE/run/hub.pid
	pidfile_runs "$pidfile" "$HUB_ID" && return 0
	# The hub's cwd is the state dir (it may write files there); no shell stays around it.
	pushd "$STATE" >/dev/null
	spawn "$pidfile" "$STATE/logs/hub.log" "$REPO_ROOT/${HUB_VENV:-.venv}/bin/jupyterhub" -f "$HUB_CONFIG"
	popd >/dev/null
	wait_ready 90 pidfile_runs "$pidfile" "$HUB_ID" -- curl -fs -o /dev/null "http://127.0.0.1:$PUBLIC_PORT/hub/health" ||
		die_with_logs "the hub did not come up" "$STATE/logs/hub.log"
}

start_culler() {
	local pidfile=$STATE/run/culler.pid timeout=${IDLE_CULL_TIMEOUT:-3600}
	[[ $timeout == 0 ]] && return 0
	pidfile_runs "$pidfile" "$CULLER_ID" && return 0
	JUPYTERHUB_API_TOKEN=$IDLE_CULLER_TOKEN spawn "$pidfile" "$STATE/logs/culler.log" \
		"$REPO_ROOT/${HUB_VENV:-.venv}/bin/python" -m jupyterhub_idle_culler \
		--url="http://127.0.0.1:$HUB_PORT/hub/api" --timeout="$timeout" \
		--cull-every="${IDLE_CULL_EVERY:-300}"
}

cmd_start() {
	cmd_install
	load_env "$1"
	start_proxy
	start_hub
	start_culler
}

cmd_stop() {
	local state=$1
	stop_pidfile culler "$state/run/culler.pid" 15 "$CULLER_ID"
	stop_pidfile hub "$state/run/hub.pid" 15 "$HUB_ID"
	stop_pidfile proxy "$state/run/proxy.pid" 15 "$PROXY_ID"
}

cmd_restart_hub() {
	load_env "$1"
	stop_pidfile hub "$STATE/run/hub.pid" 15 "$HUB_ID"
	start_hub
}

case ${1:-} in
	install) cmd_install ;;
	start) cmd_start "${2:?STATE}" ;;
	stop) cmd_stop "${2:?STATE}" ;;
	restart-hub) cmd_restart_hub "${2:?STATE}" ;;
	*) sed -n '3,7s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
