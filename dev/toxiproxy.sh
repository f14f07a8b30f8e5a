#!/usr/bin/env bash
# Toxiproxy, the TCP fault proxy the chaos campaign puts between the operator and what it talks
# to (latency, stalled and reset connections; this kernel has no tc netem). Built from the Go
# module proxy, cached by version.
#
#   dev/toxiproxy.sh build   build it into the cache (once; a no-op when cached)
#   dev/toxiproxy.sh path    print the cached binary's path (fails if not built)
#
# The cache is $BATCHNOTEBOOK_CACHE (default ~/.cache/batchnotebook), shared with helm.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=toxiproxy

VERSION=v2.12.0
CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
BIN=$CACHE/bin
OUT=$BIN/toxiproxy-server-$VERSION

usage() {
	sed -n '6,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

cmd_build() {
	local gobin started=$SECONDS
	[[ -x $OUT ]] && return 0
	mkdir -p "$BIN"
	take_lock "$CACHE/.toxiproxy-build.lock"
	[[ -x $OUT ]] && return 0
	command -v go >/dev/null || die "go is not on PATH (needed to build toxiproxy)"
	log "building toxiproxy $VERSION from the Go module proxy"
	# Installed into a private GOBIN, then moved: an interrupted build never looks cached.
	gobin=$(mktemp -d "$CACHE/toxiproxy-build.XXXXXX")
	if ! CGO_ENABLED=0 GOBIN=$gobin go install -trimpath -ldflags "-s -w" \
		"github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"; then
		rm -rf "$gobin"
		die "toxiproxy $VERSION did not build"
	fi
	mv -f "$gobin/server" "$OUT"
	rm -rf "$gobin"
	log "toxiproxy $VERSION built in $((SECONDS - started)) s"
}

cmd_path() {
	[[ -x $OUT ]] || die "toxiproxy is not built: run dev/toxiproxy.sh build"
	echo "$OUT"
}

[[ $# -eq 1 ]] || usage
case $1 in
build) cmd_build ;;
path) cmd_path ;;
*) usage ;;
esac
