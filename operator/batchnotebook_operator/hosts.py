"""Where the hub's proxy may be sent: a BatchCluster's `execHosts` policy on execution hosts.

The notebook's URL is built from the host the scheduler reports, and on some schedulers the job's
owner can rewrite that host (HTCondor's condor_qedit of RemoteHost). Without a check the hub's
proxy would then forward a user's requests, with the hub's credentials, to cloud metadata, the
Kubernetes API or hub-internal services. `refusal` decides (pure); `refused_hosts` resolves the
names of one poll round and applies it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .model import JobState, JobStatus

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The CRD's default: the service network of kubeadm, kind, k3s and most distributions.
DEFAULT_FORBIDDEN_NETWORKS = ("10.96.0.0/12",)
RESOLVE_TIMEOUT_SECONDS = 5.0
# Never routed to, whatever the policy says: cloud metadata and other node-local services live on
# link-local; 0.0.0.0/8 and :: reach the operator's own machine on Linux.
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
_UNSPECIFIED = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "::/128"))
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address inside an IPv6 one
# Letters, digits, hyphens, underscores (some sites' node names have them) and dots: nothing that
# could change what the URL means (`user@host`, `host/path`, `host:port`).
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_-]{1,63})*$")


def rewrite_host(host: str, rules: dict | None) -> str:
    """A short host name with the cluster's hostRewrite domainSuffix (IPv6 literals left alone)."""
    suffix = (rules or {}).get("domainSuffix")
    if suffix and host and "." not in host and ":" not in host:
        return host + suffix
    return host


def same_host(exec_host: str, reported: str, rules: dict | None) -> bool:
    """Whether a report names the scheduler's host: full names after hostRewrite, so `node01`
    with domainSuffix `.cluster.example` is `node01.cluster.example`, and never
    `node01.attacker.example`."""

    def full(host: str) -> str:
        return rewrite_host(host.strip(), rules).lower().rstrip(".")

    return bool(exec_host and reported) and full(exec_host) == full(reported)


def notebook_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class HostPolicy:
    patterns: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    allow_ip_literals: bool = False
    allow_loopback: bool = False
    forbidden_networks: tuple[IPNetwork, ...] = ()
    broken: str = ""  # an entry that is not a network: then every host is refused (fail closed)


def _networks(entries: Iterable[str], field: str) -> tuple[tuple[IPNetwork, ...], str]:
    networks, broken = [], ""
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            broken = broken or f"execHosts.{field} has {entry!r}, which is not a network"
    return tuple(networks), broken


def policy_from_spec(spec: dict) -> HostPolicy:
    """A BatchCluster spec's policy; a missing `execHosts` means the safe defaults."""
    rules = spec.get("execHosts") or {}
    networks, broken = _networks(rules.get("networks") or [], "networks")
    forbidden, broken_forbidden = _networks(
        rules.get("forbiddenNetworks", DEFAULT_FORBIDDEN_NETWORKS) or [], "forbiddenNetworks"
    )
    return HostPolicy(
        patterns=tuple(str(p).strip().lower().rstrip(".") for p in rules.get("patterns") or []),
        networks=networks,
        allow_ip_literals=bool(rules.get("allowIPLiterals", False)),
        allow_loopback=bool(rules.get("allowLoopback", False)),
        forbidden_networks=forbidden,
        broken=broken or broken_forbidden,
    )


def normal_host(host: str) -> str:
    """The form hosts are compared and checked in: lower case, no trailing dot, no brackets."""
    host = host.strip().lower().rstrip(".")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(normal_host(host))
    except ValueError:
        return None


def ip_in_disguise(host: str) -> bool:
    """An IPv4 address in a form resolvers accept but ip_address does not (`10.1`, `167838211`,
    `0x0a.0.0.1`): no real top-level domain is numeric, so a last label of digits (or hex) is
    one of these."""
    last = normal_host(host).rsplit(".", 1)[-1]
    return bool(re.fullmatch(r"\d+|0x[0-9a-f]*", last))


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (::ffff:a.b.c.d, 64:ff9b::a.b.c.d), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _in(address: IPAddress, networks: Iterable[IPNetwork]) -> IPNetwork | None:
    return next((n for n in networks if address.version == n.version and address in n), None)


def _address_refusal(address: IPAddress, policy: HostPolicy) -> str | None:
    address = _embedded(address)
    if _in(address, _LINK_LOCAL) or address.is_link_local:
        return f"link-local address {address}"
    if _in(address, _UNSPECIFIED):
        return f"unspecified address {address}"
    if address.is_multicast:
        return f"multicast address {address}"
    if _in(address, _LOOPBACK) and not policy.allow_loopback:
        return f"loopback address {address}; execHosts.allowLoopback is false"
    forbidden = _in(address, policy.forbidden_networks)
    if forbidden:
        return f"address {address} is in the forbidden network {forbidden}"
    return None


def _matches_pattern(host: str, pattern: str) -> bool:
    """A glob label by label: `*` and `?` never cross a dot, so `node*.hpc.example.org` matches
    neither `node1.attacker.example` nor `node1.hpc.example.org.attacker.example`."""
    labels, globs = host.split("."), pattern.split(".")
    return len(labels) == len(globs) and all(map(fnmatchcase, labels, globs))


def refusal(host: str, addresses: Sequence[str], policy: HostPolicy) -> str | None:
    """Why the proxy must not be sent to `host` (resolving to `addresses`), or None if it may.

    Every address counts (a client may connect to any of them); a name without an address is
    refused, since what it will resolve to later is unknown."""
    if policy.broken:
        return policy.broken
    name = normal_host(host)
    literal = ip_literal(name)
    if literal is None and not _HOST_NAME.match(name):
        return "not a host name"
    if literal is None and ip_in_disguise(name):
        return "an IP address in a non-standard form"
    resolved = [literal] if literal is not None else []
    for text in addresses:
        try:
            resolved.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            return f"resolves to {text!r}, which is not an address"
    if not resolved:
        return "the name does not resolve to any address"
    for address in resolved:
        reason = _address_refusal(address, policy)
        if reason:
            return reason if literal is not None else f"resolves to {reason}"
    if literal is not None and not policy.allow_ip_literals:
        return "an IP address, not a host name; execHosts.allowIPLiterals is false"
    if policy.patterns or policy.networks:
        by_name = any(_matches_pattern(name, p) for p in policy.patterns)
        by_network = bool(policy.networks) and all(
            _in(_embedded(a), policy.networks) for a in resolved
        )
        if not (by_name or by_network):
            return "matches none of execHosts.patterns and execHosts.networks"
        return None
    # Fail closed: a site says where its compute nodes are; only a one-machine stack, whose jobs
    # run on this machine, needs to say nothing more than allowLoopback.
    if policy.allow_loopback and all(_in(_embedded(a), _LOOPBACK) for a in resolved):
        return None
    return "execHosts sets no patterns or networks: no compute node is allowed yet"


async def resolve(host: str, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> tuple[list[str], str]:
    """The addresses a name resolves to, with the event loop's getaddrinfo (in a thread, the loop
    goes on); on failure no address and why."""
    literal = ip_literal(host)
    if literal is not None:
        return [str(literal)], ""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(normal_host(host), None, type=socket.SOCK_STREAM), timeout
        )
    except TimeoutError:
        return [], f"the name did not resolve within {timeout:g} s"
    except (OSError, UnicodeError) as error:
        return [], f"the name does not resolve ({error})"
    return sorted({str(info[4][0]) for info in infos}), ""


async def check(host: str, policy: HostPolicy) -> str | None:
    """Why `host` is refused, resolving it first; None if the proxy may go there."""
    name = normal_host(host)
    if policy.broken or (ip_literal(name) is None and not _HOST_NAME.match(name)):
        return refusal(name, [], policy)  # refused before any lookup
    addresses, failure = await resolve(name)
    if not addresses and failure:
        return failure
    return refusal(name, addresses, policy)


async def refused_hosts(jobs: Iterable[JobStatus], spec: dict) -> dict[str, str]:
    """host -> why refused, for the execution host (as hostRewrite makes it) of every running
    job of one poll round; each host resolved once per round."""
    rules = spec.get("hostRewrite")
    hosts = {
        rewrite_host(job.exec_host, rules)
        for job in jobs
        if job.exec_host and job.state in (JobState.RUNNING, JobState.COMPLETING)
    }
    if not hosts:
        return {}
    policy = policy_from_spec(spec)
    ordered = sorted(hosts)
    reasons = await asyncio.gather(*(check(host, policy) for host in ordered))
    return {host: reason for host, reason in zip(ordered, reasons, strict=True) if reason}
