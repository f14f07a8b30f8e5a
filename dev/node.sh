#!/usr/bin/env bash
# What a Kubernetes node needs beyond the Kubernetes binaries (dev/controlplane.sh build):
#
#   dev/node.sh build    runc, iptables and buildah from Debian; containerd, the CNI plugins and
#                        CoreDNS from the Go module proxy; our pause (dev/node/pause.c)
#
# Starting and stopping the node is Python: python -m devstack up|down (dev/devstack/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=node

# containerd 2.x: Kubernetes 1.35 was the last to support 1.x. Neither it, the CNI plugins nor
# CoreDNS have replace or exclude directives, so `go install module/cmd@version` builds them.
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
COREDNS_VERSION=v1.15.0
CNI_PLUGINS="main/bridge main/loopback ipam/host-local meta/portmap"
PACKAGES="runc iptables conntrack buildah mmdebstrap"

CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
BIN=$CACHE/bin
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

usage() {
	sed -n '4,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# go install PACKAGE@VERSION... into DIR, through a temporary directory so that an interrupted
# build never looks done.
go_install() { # DIR PACKAGE@VERSION...
	local dir=$1 tmp
	shift
	tmp=$(mktemp -d "$CACHE/build/install.XXXXXX")
	if ! GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$@"; then
		rm -rf "$tmp"
		return 1
	fi
	mkdir -p "$dir"
	mv -f "$tmp"/* "$dir"/
	rmdir "$tmp"
}

containerd_dir() { printf '%s/containerd-%s' "$CACHE" "$CONTAINERD_VERSION"; }
cni_dir() { printf '%s/cni-%s' "$CACHE" "$CNI_PLUGINS_VERSION"; }
coredns_bin() { printf '%s/coredns-%s' "$BIN" "$COREDNS_VERSION"; }
pause_bin() { printf '%s/pause-%s' "$BIN" "$(sha256sum "$REPO_ROOT/dev/node/pause.c" | cut -c1-12)"; }

build_containerd() {
	local c packages=()
	for c in containerd containerd-shim-runc-v2 ctr; do
		packages+=("github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD_VERSION")
	done
	log "building containerd $CONTAINERD_VERSION"
	go_install "$(containerd_dir)" "${packages[@]}"
}

build_cni() {
	local p packages=()
	for p in $CNI_PLUGINS; do
		packages+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION")
	done
	log "building the CNI plugins $CNI_PLUGINS_VERSION"
	go_install "$(cni_dir)/bin" "${packages[@]}"
}

build_coredns() {
	local tmp
	log "building CoreDNS $COREDNS_VERSION"
	tmp=$(mktemp -d "$CACHE/build/coredns.XXXXXX")
	go_install "$tmp" "github.com/coredns/coredns@$COREDNS_VERSION" || { rm -rf "$tmp"; return 1; }
	mv -f "$tmp/coredns" "$(coredns_bin)"
	rmdir "$tmp"
}

build_pause() {
	gcc -static -Os -Wall -Werror -o "$(pause_bin).tmp" "$REPO_ROOT/dev/node/pause.c"
	mv -f "$(pause_bin).tmp" "$(pause_bin)"
}

# Unversioned names, which dev/devstack uses.
link_all() {
	local c
	for c in containerd containerd-shim-runc-v2 ctr; do
		ln -sfn "$(containerd_dir)/$c" "$BIN/$c"
	done
	ln -sfn "$(cni_dir)" "$CACHE/cni"
	ln -sfn "$(basename "$(coredns_bin)")" "$BIN/coredns"
	ln -sfn "$(basename "$(pause_bin)")" "$BIN/pause"
}

cmd_build() {
	local started=$SECONDS
	# shellcheck disable=SC2086 # one word per package
	apt_install $PACKAGES
	mkdir -p "$BIN" "$CACHE/build"
	take_lock "$CACHE/.node-build.lock"
	[[ -x $(containerd_dir)/containerd && -x $(containerd_dir)/ctr ]] || build_containerd ||
		die "containerd $CONTAINERD_VERSION did not build"
	[[ -x $(cni_dir)/bin/bridge && -x $(cni_dir)/bin/portmap ]] || build_cni ||
		die "the CNI plugins $CNI_PLUGINS_VERSION did not build"
	[[ -x $(coredns_bin) ]] || build_coredns || die "CoreDNS $COREDNS_VERSION did not build"
	[[ -x $(pause_bin) ]] || build_pause || die "pause did not build"
	link_all
	exec 9>&-
	log "node binaries ready ($((SECONDS - started)) s)"
}

main() {
	[[ $# -eq 1 ]] || usage
	case $1 in
	build) cmd_build ;;
	*) usage ;;
	esac
}

main "$@"
