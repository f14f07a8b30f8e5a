#!/usr/bin/env bash
# `make dev`: install what is missing and start the whole local stack in the background.
# Idempotent: re-running it restarts only what is not running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=up.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
STATE=$REPO_ROOT/.dev
CACHE=${BATCHNOTEBOOK_CACHE:-$HOME/.cache/batchnotebook}
KUBECTL=$CACHE/bin/kubectl
API_PORT=16443
mkdir -p "$STATE/run" "$STATE/logs"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# The dev operator, as its pid file must name it (down.sh stops it by the same words).
# An absolute path: python runs the entry point, so the command line names it in full.
OPERATOR=("$REPO_ROOT/.venv/bin/batchnotebook-operator" --liveness http://127.0.0.1:8082/healthz)

say "Python environment (.venv)"
BATCHNOTEBOOK_SKIP_HUB5=1 dev/python.sh

say "Kubernetes API server + etcd (built once, cached in $CACHE)"
dev/controlplane.sh start "$STATE" "$API_PORT"
export KUBECONFIG=$STATE/kubeconfig

say "Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd, slurmrestd)"
dev/slurm.sh install
dev/slurm.sh start

say "Grid Engine (sge_qmaster, sge_execd)"
dev/sge.sh install
dev/sge.sh start

say "Emulators of PBS Pro, Torque, Moab, LSF and HTCondor (tests/emulators)"
dev/emulators.sh install

say "Login node for the ssh transport (sshd on 127.0.0.1:2222)"
dev/sshd.sh install
dev/sshd.sh start

say "configurable-http-proxy"
dev/hub.sh install

if [[ ! -f $STATE/env ]]; then
	token() { openssl rand -hex "$1"; }
	cat >"$STATE/env" <<ENV
HUB_URL=http://127.0.0.1:8000
HUB_API_TOKEN=$(token 24)
DEV_PASSWORD=$(token 8)
KUBECONFIG=$STATE/kubeconfig
PUBLIC_PORT=8000
PROXY_API_PORT=8001
HUB_PORT=8081
OPERATOR_PORT=8080
NAMESPACE=jupyterhub
OPERATOR_SERVICE_TOKEN=$(token 24)
CONFIGPROXY_AUTH_TOKEN=$(token 24)
PATH=$REPO_ROOT/.venv/bin:$CACHE/bin:\$PATH
ENV
	chmod 600 "$STATE/env"
fi
# The admin CLI (`batchnotebook`) on the PATH too; added to an older file.
grep -q '/.venv/bin:' "$STATE/env" || sed -i -E "s|^(export )?PATH=|\1PATH=$REPO_ROOT/.venv/bin:|" "$STATE/env"
# A pod profile (KubeSpawner) beside the batch profiles on the form; added to an older file too.
grep -q 'POD_PROFILES=' "$STATE/env" ||
	echo "POD_PROFILES='$(tr -d '\n' <dev/pod-profiles.json)'" >>"$STATE/env"
# Exported, so that `source .dev/env` hands KUBECONFIG to kubectl (and fixes an older file).
sed -i -E 's/^([A-Z_]+=)/export \1/' "$STATE/env"

say "CRDs, namespace, the operator's Secrets and a BatchCluster per scheduler (dev/clusters/)"
"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$KUBECTL" get namespace jupyterhub >/dev/null 2>&1 || "$KUBECTL" create namespace jupyterhub >/dev/null
# The operator's own Secrets, in its namespace "default": its key for the login node, and the
# key slurmrestd checks tokens with. Rewritten when the files change.
secret_from_file() { # NAME KEY=FILE
	"$KUBECTL" create secret generic "$1" --namespace default --from-file="$2" \
		--dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
}
secret_from_file batchnotebook-ssh ssh-privatekey="$STATE/sshd/id_ed25519"
secret_from_file slurm-jwt jwt_hs256.key=/var/spool/slurm/jwt_hs256.key
"$KUBECTL" apply -f dev/clusters/ >/dev/null
# The clusters that name this clone's path or the login node's host key.
host_key=$(dev/sshd.sh host-key)
for template in dev/clusters/*.yaml.in; do
	sed -e "s|@REPO@|$REPO_ROOT|g" -e "s|@SSH_HOST_KEY@|$host_key|g" "$template" \
		| "$KUBECTL" apply -f - >/dev/null
done

say "Operator"
# An operator older than its code (a pull, an edit) makes way for a new one: notebooks and
# their jobs outlive it, and the new one takes them over.
if pidfile_runs "$STATE/run/operator.pid" "${OPERATOR[*]}" \
	&& [[ -n $(find operator -name '*.py' -newer "$STATE/run/operator.pid" -print -quit) ]]; then
	stop_pidfile operator "$STATE/run/operator.pid" 30 "${OPERATOR[*]}"
fi
if ! pidfile_runs "$STATE/run/operator.pid" "${OPERATOR[*]}"; then
	KUBECONFIG=$STATE/kubeconfig BATCHNOTEBOOK_LISTEN=127.0.0.1:8080 \
		BATCHNOTEBOOK_URL_PREFIX=/services/batchnotebook \
		spawn "$STATE/run/operator.pid" "$STATE/logs/operator.log" "${OPERATOR[@]}"
	wait_ready 30 pidfile_runs "$STATE/run/operator.pid" "${OPERATOR[*]}" -- \
		curl -fs -o /dev/null http://127.0.0.1:8080/healthz \
		|| die_with_logs "the operator did not come up" "$STATE/logs/operator.log"
fi

say "JupyterHub + proxy"
dev/hub.sh start "$STATE"

# shellcheck disable=SC1091
source "$STATE/env"
cat <<DONE

The local stack is running.
  Hub:        $HUB_URL   (log in as alice or bob, password: $DEV_PASSWORD)
  Settings:   source .dev/env   (HUB_URL, HUB_API_TOKEN, KUBECONFIG, DEV_PASSWORD; kubectl, batchnotebook on PATH)
  Notebooks:  kubectl get bnb -A        Clusters: kubectl get bcl  (one per scheduler: dev/clusters/)
  Logs:       .dev/logs/                Stop:     make dev-down
DONE
