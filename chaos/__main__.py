"""`python -m chaos run --seed N --faults K [--state DIR] [--out DIR]`: one campaign on its own
API server (port 37443), operator (38080) and login node (38102), against the system Slurm.
Stops slurmctld (shared by everything on this machine) whenever the timeline says so."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.integration.stack import REPO

from .campaign import Options, run_campaign
from .schedule import KINDS, Plan, describe, timeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run a campaign"), ("plan", "print the timeline only")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--seed", type=int, required=True)
        sub.add_argument("--faults", type=int, default=12)
        sub.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
        sub.add_argument("--gap", type=float, nargs=2, default=Plan.gap, metavar=("MIN", "MAX"))
        sub.add_argument("--down", type=float, nargs=2, default=Plan.down, metavar=("MIN", "MAX"))
        sub.add_argument(
            "--long",
            type=float,
            nargs=3,
            default=None,
            metavar=("SHARE", "MIN", "MAX"),
            help="this share of the faults lasts MIN..MAX seconds instead",
        )
    run = commands.choices["run"]
    run.add_argument("--state", type=Path, default=REPO / ".chaos")
    run.add_argument("--out", type=Path, default=REPO / "chaos" / "results")
    run.add_argument("--api-port", type=int, default=Options.api_port)
    run.add_argument("--operator-port", type=int, default=Options.operator_port)
    run.add_argument("--sshd-port", type=int, default=Options.sshd_port)
    run.add_argument("--hub-port", type=int, default=Options.hub_port)
    run.add_argument("--poll-interval", type=int, default=Options.poll_interval)
    run.add_argument("--bound", type=float, default=Options.bound,
                     help="seconds to Ready or gone once the system is healthy again")  # fmt: skip
    run.add_argument("--warmup", type=float, default=Options.warmup)
    run.add_argument("--max-notebooks", type=int, default=Options.max_notebooks)
    args = parser.parse_args(argv)
    long = {"long_share": args.long[0], "long_down": tuple(args.long[1:])} if args.long else {}
    plan = Plan(
        args.seed, args.faults, tuple(args.kinds), tuple(args.gap), tuple(args.down), **long
    )
    if args.command == "plan":
        print(describe(plan, timeline(plan)))
        return 0
    options = Options(
        plan,
        state=args.state.resolve(),
        out=args.out.resolve(),
        api_port=args.api_port,
        operator_port=args.operator_port,
        sshd_port=args.sshd_port,
        hub_port=args.hub_port,
        poll_interval=args.poll_interval,
        bound=args.bound,
        warmup=args.warmup,
        max_notebooks=args.max_notebooks,
    )
    return run_campaign(options)


if __name__ == "__main__":
    sys.exit(main())
