#!/usr/bin/env bash
# Test-only dialect emulators of schedulers that cannot be installed here (tests/emulators/):
# spool directories and executable front ends, for every dialect with a bin/ directory.
# Idempotent and fast. Usage: dev/emulators.sh install [SPOOL_ROOT]  (default /var/spool/bnb-emulators)
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EMULATORS=$REPO_ROOT/tests/emulators

install() {
	local root=${1:-/var/spool/bnb-emulators}
	local dialects=() bin
	for bin in "$EMULATORS"/*/bin; do
		dialects+=("$(basename "$(dirname "$bin")")")
		chmod 0755 "$bin" "$bin"/*
	done
	chmod 0644 "$EMULATORS"/*.py "$EMULATORS"/*/*.py
	/usr/bin/python3 "$EMULATORS/core.py" install --root "$root" "${dialects[@]}"
	# The front ends run as the notebook's user (sudo -u): every directory above them must be
	# searchable, which a clone under /root is not. A clone whose own root is private (git clone
	# into `mktemp -d`, mode 0700) is ours to open for searching; the rest of the tree is 0755.
	[[ -O $REPO_ROOT ]] && chmod a+x "$REPO_ROOT"
	local user
	for user in alice bob; do
		if id "$user" &>/dev/null && ! sudo -n -u "$user" -- test -x "$EMULATORS/${dialects[0]}/bin"; then
			echo "emulators: $user cannot reach $EMULATORS; clone the repository where every user can read it" >&2
			exit 1
		fi
	done
}

case "${1:-}" in
install) install "${2:-}" ;;
*)
	echo "usage: $0 install [SPOOL_ROOT]" >&2
	exit 2
	;;
esac
