#!/usr/bin/env bash
# Helm, built from the Go module proxy (no other way to get it here) and cached by version.
#
#   dev/helm.sh build    build helm into the cache (once; a no-op when cached)
#   dev/helm.sh path     print the cached helm binary's path (fails if not built)
#
# The cache is $BATCHNOTEBOOK_CACHE (default ~/.cache/batchnotebook), shared with controlplane.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=helm

# helm v3 has no replace directives in its go.mod, so `go install ...@version` works as is.
HELM_VERSION=v3.22.0

CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
BIN=$CACHE/bin

usage() {
	sed -n '4,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

helm_bin() { printf '%s/helm-%s' "$BIN" "$HELM_VERSION"; }

cmd_build() {
	local out gobin started=$SECONDS
	out=$(helm_bin)
	if [[ -x $out && -L $BIN/helm ]]; then
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH (needed to build helm)"
	mkdir -p "$BIN"
	take_lock "$CACHE/.helm-build.lock"
	if [[ ! -x $out ]]; then
		log "building helm $HELM_VERSION from the Go module proxy"
		# Installed into a private GOBIN, then moved: an interrupted build never looks cached.
		gobin=$(mktemp -d "$CACHE/helm-build.XXXXXX")
		# Without the version stamp `helm version` says v3.x-unreleased.
		if ! CGO_ENABLED=0 GOBIN=$gobin go install -trimpath \
			-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
			"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
			rm -rf "$gobin"
			die "helm $HELM_VERSION did not build"
		fi
		mv -f "$gobin/helm" "$out"
		rm -rf "$gobin"
		log "helm $HELM_VERSION built in $((SECONDS - started)) s"
	fi
	ln -sfn "$(basename "$out")" "$BIN/helm"
	exec 9>&-
}

cmd_path() {
	[[ -x $(helm_bin) ]] || die "helm is not built: run dev/helm.sh build"
	helm_bin
	echo
}

main() {
	[[ $# -eq 1 ]] || usage
	case $1 in
	build) cmd_build ;;
	path) cmd_path ;;
	*) usage ;;
	esac
}

main "$@"
