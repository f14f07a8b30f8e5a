"""The execHosts policy: where the hub's proxy may be sent. The attack: a job's owner rewrites the
execution host the scheduler reports (HTCondor's condor_qedit of RemoteHost) so that the hub's
proxy, with the hub's credentials, reaches cloud metadata, the Kubernetes API or the hub's own
services."""

import asyncio
import socket

import pytest

from batchnotebook_operator.hosts import (
    check,
    policy_from_spec,
    refusal,
    refused_hosts,
    resolve,
)
from batchnotebook_operator.model import JobState, JobStatus

DEFAULT = policy_from_spec({})
LOCAL_STACK = policy_from_spec({"execHosts": {"allowLoopback": True}})
SITE = policy_from_spec(
    {"execHosts": {"patterns": ["node*.hpc.example.org", "gpu??.hpc.example.org"]}}
)
NETWORKS = policy_from_spec({"execHosts": {"networks": ["10.20.0.0/16", "fd00:20::/64"]}})
LITERALS = policy_from_spec(
    {"execHosts": {"allowIPLiterals": True, "networks": ["10.20.0.0/16", "fd00:20::/64"]}}
)


@pytest.mark.parametrize(
    ("host", "addresses", "policy", "why"),
    [
        # Cloud metadata and other link-local services: never, as literal or behind a name.
        ("169.254.169.254", [], DEFAULT, "link-local address 169.254.169.254"),
        ("169.254.169.254", [], LITERALS, "link-local address 169.254.169.254"),
        ("169.254.169.254.", [], LITERALS, "link-local address 169.254.169.254"),
        ("fe80::1", [], LITERALS, "link-local address fe80::1"),
        ("[FE80::1]", [], LITERALS, "link-local address fe80::1"),
        ("::ffff:169.254.169.254", [], LITERALS, "link-local address 169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", [], LITERALS, "link-local address 169.254.169.254"),
        ("metadata.example.org", ["169.254.169.254"], DEFAULT, "resolves to link-local"),
        ("node01.hpc.example.org", ["169.254.169.254"], SITE, "resolves to link-local"),
        # 0.0.0.0 reaches the operator's own machine on Linux.
        ("0.0.0.0", [], LITERALS, "unspecified address 0.0.0.0"),
        ("::", [], LITERALS, "unspecified address ::"),
        ("224.0.0.1", [], LITERALS, "multicast"),
        # Loopback only where the jobs run on the hub's machine.
        ("127.0.0.1", [], LITERALS, "loopback address 127.0.0.1"),
        ("::1", [], LITERALS, "loopback address ::1"),
        ("localhost", ["127.0.0.1", "::1"], DEFAULT, "resolves to loopback address 127.0.0.1"),
        ("VM", ["127.0.0.1"], DEFAULT, "allowLoopback is false"),
        # The Kubernetes service network, by default and as the admin sets it.
        ("10.96.0.1", [], LITERALS, "forbidden network 10.96.0.0/12"),
        ("kubernetes.default", ["10.96.0.1"], DEFAULT, "forbidden network 10.96.0.0/12"),
        ("api.example.org", ["10.20.0.5", "10.96.0.1"], DEFAULT, "forbidden network"),
        # IP literals only when allowed.
        ("10.20.0.5", [], DEFAULT, "allowIPLiterals is false"),
        ("fd00:20::5", [], DEFAULT, "allowIPLiterals is false"),
        # Patterns: label by label, on the full name, whatever the case or a trailing dot.
        ("node01.attacker.example", ["10.20.0.5"], SITE, "matches none"),
        ("node01", ["10.20.0.5"], SITE, "matches none"),
        ("node01.hpc.example.org.attacker.example", ["10.20.0.5"], SITE, "matches none"),
        ("evil.node01.hpc.example.org", ["10.20.0.5"], SITE, "matches none"),
        ("gpu001.hpc.example.org", ["10.20.0.5"], SITE, "matches none"),
        # Networks: every address must lie in them.
        ("node01.hpc.example.org", ["192.168.1.5"], NETWORKS, "matches none"),
        ("node01.hpc.example.org", ["10.20.0.5", "192.168.1.5"], NETWORKS, "matches none"),
        # Names that are not names, or that do not resolve.
        ("node01@169.254.169.254", ["10.20.0.5"], DEFAULT, "not a host name"),
        ("node01/latest", ["10.20.0.5"], DEFAULT, "not a host name"),
        ("node01:8888", ["10.20.0.5"], DEFAULT, "not a host name"),
        ("", [], DEFAULT, "not a host name"),
        ("node01.hpc.example.org", [], DEFAULT, "does not resolve"),
        # Fail closed: a site that says nothing of where its nodes are routes nowhere (but a
        # one-machine stack's loopback).
        ("node01.hpc.example.org", ["10.20.0.5"], DEFAULT, "no patterns or networks"),
        ("node01.hpc.example.org", ["10.20.0.5"], LOCAL_STACK, "no patterns or networks"),
        (
            "10.20.0.5",
            [],
            policy_from_spec({"execHosts": {"allowIPLiterals": True}}),
            "no patterns",
        ),
        # IPv4 in forms resolvers accept: decimal, short, hex (10.1.2.3, 10.0.0.1, 10.0.0.1).
        ("167838211", ["10.1.2.3"], DEFAULT, "non-standard form"),
        ("10.1", ["10.0.0.1"], NETWORKS, "non-standard form"),
        ("0x0a.0.0.1", ["10.0.0.1"], LITERALS, "non-standard form"),
        ("node01.hpc.123", ["10.20.0.5"], NETWORKS, "non-standard form"),
    ],
)
def test_refused(host, addresses, policy, why):
    reason = refusal(host, addresses, policy)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("host", "addresses", "policy"),
    [
        ("node01.hpc.example.org", ["10.20.0.5"], SITE),
        ("NODE01.HPC.Example.ORG.", ["10.20.0.5"], SITE),
        ("gpu01.hpc.example.org", ["10.20.0.5", "fd00:20::5"], SITE),
        ("anything.example.org", ["10.20.0.5", "fd00:20::5"], NETWORKS),
        ("n.example.org", ["fd00:20::5"], NETWORKS),
        ("10.20.0.5", [], LITERALS),
        ("[fd00:20::5]", [], LITERALS),
        ("vm", ["127.0.0.1"], LOCAL_STACK),
        ("localhost", ["127.0.0.1", "::1"], LOCAL_STACK),
        ("node_01.hpc.example.org", ["10.20.0.5"], NETWORKS),
    ],
)
def test_allowed(host, addresses, policy):
    assert refusal(host, addresses, policy) is None


def test_loopback_never_opens_link_local_or_the_service_network():
    assert refusal("vm", ["127.0.0.1", "169.254.169.254"], LOCAL_STACK)
    assert refusal("vm", ["10.96.0.10"], LOCAL_STACK)


def test_forbidden_networks_replace_the_default():
    rules = {"forbiddenNetworks": ["10.0.0.0/8", "fd00::/8"], "patterns": ["*.example.org"]}
    policy = policy_from_spec({"execHosts": rules})
    assert "10.0.0.0/8" in refusal("n.example.org", ["10.20.0.5"], policy)
    assert "fd00::/8" in refusal("n.example.org", ["fd00:20::5"], policy)
    assert refusal("n.example.org", ["192.168.1.5"], policy) is None


def test_a_broken_network_refuses_every_host():
    for rules in ({"networks": ["10.20.0.0/16", "nonsense"]}, {"forbiddenNetworks": ["10.96/99"]}):
        reason = refusal("n.example.org", ["10.20.0.5"], policy_from_spec({"execHosts": rules}))
        assert reason and "not a network" in reason


def test_defaults_when_the_field_is_absent_or_empty():
    for spec in ({}, {"execHosts": {}}, {"execHosts": None}):
        policy = policy_from_spec(spec)
        assert not policy.allow_ip_literals and not policy.allow_loopback
        assert [str(n) for n in policy.forbidden_networks] == ["10.96.0.0/12"]


async def test_resolve_real_names():
    addresses, why = await resolve("localhost")
    assert "127.0.0.1" in addresses and why == ""
    assert await resolve("169.254.169.254") == (["169.254.169.254"], "")
    addresses, why = await resolve("nothing.invalid")
    assert addresses == [] and "does not resolve" in why


async def test_check_resolves_the_name(monkeypatch):
    answers = {"metadata.example.org": "169.254.169.254", "node01.hpc.example.org": "10.20.0.5"}

    async def getaddrinfo(host, port, **_):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    assert "link-local" in await check("metadata.example.org", DEFAULT)
    assert await check("node01.hpc.example.org", SITE) is None
    assert "does not resolve" in await check("node01.attacker.example", DEFAULT)


async def test_refused_hosts_of_a_round_are_full_names_after_the_rewrite(monkeypatch):
    looked_up = []

    async def getaddrinfo(host, port, **_):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.0.5", 0))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    spec = {
        "hostRewrite": {"domainSuffix": ".hpc.example.org"},
        "execHosts": {"patterns": ["node*.hpc.example.org"]},
    }
    jobs = [
        JobStatus("1", JobState.RUNNING, exec_host="node01"),
        JobStatus("2", JobState.RUNNING, exec_host="node01"),
        JobStatus("3", JobState.RUNNING, exec_host="node01.attacker.example"),
        JobStatus("4", JobState.RUNNING, exec_host="169.254.169.254"),
        JobStatus("5", JobState.PENDING, exec_host="ignored.example"),
    ]
    refused = await refused_hosts(jobs, spec)
    assert set(refused) == {"node01.attacker.example", "169.254.169.254"}
    assert "link-local" in refused["169.254.169.254"]
    assert sorted(looked_up) == ["node01.attacker.example", "node01.hpc.example.org"]  # once each
