#!/usr/bin/env bash
# The project's virtual environment in .venv, (re)installed when pyproject.toml or this file
# changes (the bench extra too: the suite runs the benchmark's smoke test).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml dev/python.sh | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
	.venv/bin/pip install --quiet --disable-pip-version-check -e '.[operator,hub,test,bench]'
	rm -f .venv/.installed-*
	touch "$stamp"
fi

# JupyterHub 5 beside 6: the spawner must work on both (tests/integration/test_hub5.py).
stamp5=.venv-hub5/.installed-$(cat pyproject.toml dev/python.sh | sha256sum | cut -c1-16)
if [[ ${BATCHNOTEBOOK_SKIP_HUB5:-} != 1 && ! -f $stamp5 ]]; then
	[[ -x .venv-hub5/bin/python ]] || python3 -m venv .venv-hub5
	.venv-hub5/bin/pip install --quiet --disable-pip-version-check -e '.[hub]' 'jupyterhub>=5,<6'
	rm -f .venv-hub5/.installed-*
	touch "$stamp5"
fi
