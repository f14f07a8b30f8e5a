"""python -m devstack up STATE PORT | down STATE — the local Kubernetes with its node."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the control plane and its node")
    start.add_argument("state", type=Path, help="state directory, e.g. .dev")
    start.add_argument("port", type=int, help="the API server's port")
    stop = commands.add_parser("down", help="stop the node, its containers and the control plane")
    stop.add_argument("state", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster.up(args.state, args.port)
        else:
            cluster.down(args.state)
    except (RuntimeError, TimeoutError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
