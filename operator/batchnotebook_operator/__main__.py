"""`batchnotebook-operator`: run the operator (a thin wrapper around `kopf run`)."""

from __future__ import annotations

import argparse
import asyncio
import os

import kopf

from . import handlers  # noqa: F401 - registers the handlers

LOG_FORMATS = {
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
    "json": kopf.LogFormat.JSON,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--namespace", action="append", help="watch only these namespaces (default: all)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness probe endpoint served by kopf",
    )
    parser.add_argument(
        "--log-format",
        choices=sorted(LOG_FORMATS),
        default=os.environ.get("BATCHNOTEBOOK_LOG_FORMAT", "full"),
        help="json: one JSON object per line, for log collectors (env BATCHNOTEBOOK_LOG_FORMAT)",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def configure_logging(args: argparse.Namespace) -> None:
    # kopf's log prefix names the object each line is about ([namespace/name]); in JSON the
    # object is a field of its own.
    kopf.configure(
        verbose=args.verbose,
        log_format=LOG_FORMATS[args.log_format],
        log_prefix=args.log_format != "json",
    )


def main() -> None:
    args = parse_args()
    configure_logging(args)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    )


if __name__ == "__main__":
    main()
