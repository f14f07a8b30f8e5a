"""`batchnotebook-operator`: run the operator (a thin wrapper around `kopf run`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket

import kopf
from kubernetes_asyncio import client

from . import handlers  # noqa: F401 - registers the handlers
from .election import Election, Timing
from .kube import Kube
from .lease import LeaseElector
from .standby import Standby

log = logging.getLogger(__name__)

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
    parser.add_argument(
        "--leader-election",
        metavar="LEASE",
        default=os.environ.get("BATCHNOTEBOOK_LEASE", ""),
        help="run as one of several replicas: only the holder of this Lease (in the namespace "
        "BATCHNOTEBOOK_NAMESPACE) acts, the others forward job reports to it (env "
        "BATCHNOTEBOOK_LEASE; seconds: BATCHNOTEBOOK_LEASE_DURATION, _RENEW_DEADLINE, "
        "_RETRY_PERIOD)",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def lease_timing() -> Timing:
    env = os.environ.get
    return Timing(
        duration=float(env("BATCHNOTEBOOK_LEASE_DURATION", Timing.duration)),
        renew_deadline=float(env("BATCHNOTEBOOK_LEASE_RENEW_DEADLINE", Timing.renew_deadline)),
        retry_period=float(env("BATCHNOTEBOOK_LEASE_RETRY_PERIOD", Timing.retry_period)),
    )


def configure_logging(args: argparse.Namespace) -> None:
    # kopf's log prefix names the object each line is about ([namespace/name]); in JSON the
    # object is a field of its own.
    kopf.configure(
        verbose=args.verbose,
        log_format=LOG_FORMATS[args.log_format],
        log_prefix=args.log_format != "json",
    )


async def operate(args: argparse.Namespace) -> None:
    # Standalone: kopf's own peering would pause every replica of equal priority, and the Lease
    # (run_elected) already says which one acts.
    await kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        standalone=True,
    )


def peer_url(listen: str) -> str:
    """Where the other replicas reach this one's report routes: BATCHNOTEBOOK_PEER_URL, else
    the pod's IP (BATCHNOTEBOOK_POD_IP, from the downward API) or host name, and the port."""
    if url := os.environ.get("BATCHNOTEBOOK_PEER_URL"):
        return url
    host = os.environ.get("BATCHNOTEBOOK_POD_IP") or socket.gethostname()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{listen.rpartition(':')[2]}"


async def run_elected(args: argparse.Namespace) -> None:
    """Wait as a standby until this replica holds the Lease, then operate while it renews it.
    A leader that cannot renew exits at once: the process must not act a moment longer, and its
    restart comes back as a standby."""
    # The pod's name, made unique: a restarted container waits out its predecessor's Lease.
    identity = (
        f"{os.environ.get('BATCHNOTEBOOK_POD_NAME') or socket.gethostname()}_{secrets.token_hex(4)}"
    )
    listen = os.environ.get("BATCHNOTEBOOK_LISTEN", "0.0.0.0:8080")
    url = peer_url(listen)
    kube = await Kube.connect()
    namespace = os.environ.get("BATCHNOTEBOOK_NAMESPACE", "default")
    elector = LeaseElector(
        client.CoordinationV1Api(kube.api),
        namespace,
        args.leader_election,
        Election(identity, lease_timing()),
        url,
    )
    standby = Standby(listen, os.environ.get("BATCHNOTEBOOK_URL_PREFIX", ""), args.liveness, url)
    await standby.start(elector.election.leader_url)
    log.info("standby: %s waits for the Lease %s/%s", identity, namespace, args.leader_election)
    try:
        await elector.until_leading()
        # Renewed from the moment it is won: however long the standby takes to stop, the Lease
        # must not lapse meanwhile (another replica would take it, and both would exit).
        renewing = asyncio.create_task(elector.keep_leading())
    finally:
        await standby.stop()
    operating = asyncio.create_task(operate(args))
    done, _pending = await asyncio.wait({operating, renewing}, return_when=asyncio.FIRST_COMPLETED)
    if renewing in done:
        log.critical(
            "lost the Lease %s: exiting so that no two operators act", args.leader_election
        )
        logging.shutdown()
        os._exit(1)
    renewing.cancel()
    try:
        await elector.release()  # kopf has stopped (a signal): the standby need not wait it out
    finally:
        await kube.close()
    operating.result()


def main() -> None:
    args = parse_args()
    configure_logging(args)
    asyncio.run(run_elected(args) if args.leader_election else operate(args))


if __name__ == "__main__":
    main()
