#!/usr/bin/env bash
# `make lint` (and the first step of `make test`): ruff, the type checker (mypy, configured in
# pyproject.toml) and shellcheck over every shell script in the tree.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=dev/lib.sh
. dev/lib.sh
LOG_TAG=lint.sh

dev/python.sh
command -v shellcheck >/dev/null || apt_install shellcheck

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The shell scripts: *.sh, and the executables that start with a shell's #! line.
mapfile -t scripts < <(
	git ls-files -z | xargs -0 grep -lIE '^#!(/usr/bin/env |/bin/)(ba)?sh' -- 2>/dev/null |
		grep -vE '\.(j2|md)$' || true
)
mapfile -t -O "${#scripts[@]}" scripts < <(git ls-files '*.sh')
mapfile -t scripts < <(printf '%s\n' "${scripts[@]}" | sort -u)
shellcheck --external-sources "${scripts[@]}"
log "ruff, mypy and shellcheck ($((${#scripts[@]})) scripts): clean"
