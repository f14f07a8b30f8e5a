"""The network between the operator and what it talks to, made to fail on purpose. Toxiproxy
(dev/toxiproxy.sh) stands between the operator and the login node's sshd, slurmrestd and the
API server: its toxics add latency, stall connections or reset them. iptables rules on the
loopback drop the packets sent to those proxies, all of them (a partition) or some (random loss,
the `statistic` match). Only the operator goes through the proxies: the campaign's own reads
(kubectl, squeue) do not, so they see the truth while the operator is cut off."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import Daemon, listens, wait_until
from tests.integration.stack import REPO, run


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: int  # the port the operator connects to
    upstream: int  # the real service's port


@dataclass(frozen=True)
class Toxic:
    """One Toxiproxy toxic, as its API takes it."""

    name: str
    type: str
    attributes: dict
    stream: str = "downstream"

    def body(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": 1.0,
            "attributes": self.attributes,
        }


# Each reply waits 1-2 s: every SSH command, REST call and API request is that much slower.
LATENCY = Toxic("latency", "latency", {"latency": 1500, "jitter": 500})
# Nothing gets through and the connections stay open: what a half-dead link looks like.
STALL = Toxic("stall", "timeout", {"timeout": 0})
# Every connection is reset as soon as it carries data.
RESET = Toxic("reset", "reset_peer", {"timeout": 0})


def drop_rule(port: int, comment: str, probability: float | None) -> list[str]:
    """The iptables rule (without -I/-D) dropping the loopback packets sent to `port`: all of
    them, or each with `probability`."""
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port)]
    if probability is not None:
        rule += ["-m", "statistic", "--mode", "random", "--probability", f"{probability:g}"]
    return [*rule, "-m", "comment", "--comment", comment, "-j", "DROP"]


class Network:
    def __init__(
        self, state: Path, api_port: int, proxies: Sequence[Proxy], comment: str, seed: int
    ) -> None:
        self.api_port, self.proxies, self.comment = api_port, tuple(proxies), comment
        binary = run(REPO / "dev/toxiproxy.sh", "path").stdout.strip()
        self.daemon = Daemon(
            "toxiproxy",
            # The campaign's seed draws the toxics' jitter too: a replay slows the same way.
            [binary, "-host", "127.0.0.1", "-port", str(api_port), "-seed", str(seed)],
            state / "run",
            state / "logs",
            marker=str(api_port),
            env={"LOG_LEVEL": "warn"},  # not a line per connection
        )

    def port(self, name: str) -> int:
        return next(p.listen for p in self.proxies if p.name == name)

    def _call(self, method: str, path: str, body: dict | None = None) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def start(self) -> None:
        self.daemon.start()
        wait_until(lambda: listens("127.0.0.1", self.api_port), 30, "toxiproxy to listen")
        for proxy in self.proxies:
            self._call(
                "POST",
                "/proxies",
                {
                    "name": proxy.name,
                    "listen": f"127.0.0.1:{proxy.listen}",
                    "upstream": f"127.0.0.1:{proxy.upstream}",
                    "enabled": True,
                },
            )

    def add_toxic(self, toxic: Toxic, names: Sequence[str]) -> None:
        for name in names:
            self._call("POST", f"/proxies/{name}/toxics", toxic.body())

    def remove_toxic(self, toxic: Toxic, names: Sequence[str]) -> None:
        for name in names:
            self._call("DELETE", f"/proxies/{name}/toxics/{toxic.name}")

    def drop(self, names: Sequence[str], probability: float | None = None) -> None:
        for name in names:
            run("iptables", "-I", *drop_rule(self.port(name), self.comment, probability))

    def heal(self) -> None:
        """Removes every drop rule of ours and every toxic: the network as it was."""
        listed = run("iptables", "-S", "OUTPUT", check=False).stdout.splitlines()
        for line in listed:
            if f'--comment "{self.comment}"' in line or f"--comment {self.comment}" in line:
                run("iptables", "-D", *line.split()[1:], check=False)
        if self.daemon.pid() is not None:
            self._call("POST", "/reset")

    def healthy(self) -> bool:
        """No drop rule of ours is left and the proxies run."""
        listed = run("iptables", "-S", "OUTPUT", check=False).stdout
        serving = all(listens("127.0.0.1", p.listen) for p in self.proxies)
        return self.comment not in listed and serving

    def stop(self) -> None:
        self.heal()
        self.daemon.stop()
