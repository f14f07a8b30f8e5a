#!/usr/bin/env bash
# The incumbent for the benchmark: batchspawner 1.3.0 with the JupyterHub our hub runs (6.1.1),
# in .venv-batchspawner.  Built from Debian's /usr/bin/python3 and world-readable, because the same
# environment runs the hub (as root) and batchspawner-singleuser inside the job (as alice), and
# root's pyenv Python lives in /root (0700).  Idempotent: reinstalls only when a version changes.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO_ROOT/.venv-batchspawner
BATCHSPAWNER_VERSION=1.3.0
JUPYTERHUB_VERSION=6.1.1
stamp=$VENV/.installed-batchspawner-$BATCHSPAWNER_VERSION-jupyterhub-$JUPYTERHUB_VERSION

[[ -f $stamp ]] && exit 0
umask 022
[[ -x $VENV/bin/python ]] || /usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
	"batchspawner==$BATCHSPAWNER_VERSION" "jupyterhub==$JUPYTERHUB_VERSION"
chmod -R a+rX "$VENV"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "setup-batchspawner: batchspawner $BATCHSPAWNER_VERSION, jupyterhub $JUPYTERHUB_VERSION in $VENV"
