"""`batchnotebook-operator`: run the operator (a thin wrapper around `kopf run`)."""

from __future__ import annotations

import argparse
import asyncio

import kopf

from . import handlers  # noqa: F401 - registers the handlers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--namespace", action="append", help="watch only these namespaces (default: all)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness probe endpoint served by kopf",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    # kopf's own log format names the object each line is about ([namespace/name]).
    kopf.configure(verbose=args.verbose, log_prefix=True)
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
