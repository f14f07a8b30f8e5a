"""python -m devstack up STATE PORT | down STATE — the local Kubernetes with its node;
python -m devstack dev up | down — `make dev`: the product on it, in .dev (dev.py);
python -m devstack stop-hubs STATE — the process hubs (hub.py) of STATE and its subdirectories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cluster, dev, hub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the control plane and its node")
    start.add_argument("state", type=Path, help="state directory, e.g. .test-node")
    start.add_argument("port", type=int, help="the API server's port")
    stop = commands.add_parser("down", help="stop the node, its containers and the control plane")
    stop.add_argument("state", type=Path)
    whole = commands.add_parser("dev", help="`make dev`: the operator and the hub in pods, in .dev")
    whole.add_argument("action", choices=["up", "down"])
    hubs = commands.add_parser("stop-hubs", help="stop the process hubs a test run left")
    hubs.add_argument("state", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster.up(args.state, args.port)
        elif args.command == "down":
            cluster.down(args.state)
        elif args.command == "stop-hubs":
            for state in (args.state, *args.state.glob("*/")):
                if (state / "run").is_dir():
                    hub.stop(state)
        elif args.action == "up":
            dev.up()
        else:
            dev.down()
    except (RuntimeError, TimeoutError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
