#!/usr/bin/env bash
# The project's virtual environment in .venv, (re)installed when pyproject.toml changes.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
	.venv/bin/pip install --quiet --disable-pip-version-check -e '.[hub,test]'
	rm -f .venv/.installed-*
	touch "$stamp"
fi
