#!/usr/bin/env bash
# configurable-http-proxy for the process stacks' hubs (dev/devstack/hub.py starts and stops
# them: the proxy, JupyterHub and the idle culler).
#
#   dev/hub.sh install        configurable-http-proxy from npm into the cache
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=hub

CHP_VERSION=5.3.0 # devstack/hub.py names the same
CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
CHP=$CACHE/node/chp-$CHP_VERSION/node_modules/.bin/configurable-http-proxy

cmd_install() {
	[[ -x $CHP ]] && return 0
	log "installing configurable-http-proxy $CHP_VERSION"
	mkdir -p "$CACHE/node/chp-$CHP_VERSION"
	npm install --silent --no-audit --no-fund --prefix "$CACHE/node/chp-$CHP_VERSION" \
		"configurable-http-proxy@$CHP_VERSION" >/dev/null
}

case ${1:-} in
	install) cmd_install ;;
	*) sed -n '4,4s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
