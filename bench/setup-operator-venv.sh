#!/usr/bin/env bash
# The operator as its image ships it, for the benchmark: the project with its own dependencies
# only (its operator extra; no test, hub or bench extras), in .venv-operator.  The suite's .venv also holds the sync
# `kubernetes` client (a test dependency), which kopf imports whenever it is installed: measured
# there, the operator would carry memory that production does not.  Editable, so it runs the
# working tree's code; reinstalled only when pyproject.toml changes.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO_ROOT/.venv-operator
stamp=$VENV/.installed-$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)

[[ -f $stamp ]] && exit 0
[[ -x $VENV/bin/python ]] || "$REPO_ROOT/.venv/bin/python" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "${REPO_ROOT}[operator]"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "setup-operator-venv: the operator and its dependencies in $VENV"
