"""JupyterHub in the campaign (devstack.hub's process hub, configurable-http-proxy and the idle
culler, with our spawner) on the campaign's API server: users start and stop named servers
through the hub's REST API, the culler stops servers nobody uses, and every server the hub calls
ready is asked through the proxy whose it is. The hub is one of the faults: killed with SIGKILL
and started again, as a crashed hub pod would be."""

from __future__ import annotations

import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from devstack.processes import http_answers
from tests.integration.stack import Hub

from .faults import Injector, kill
from .invariants import Violation
from .stack import Stack

USERS = ("alice", "bob")
SERVERS_PER_USER = 3  # below the hub's named_server_limit_per_user (5)
CULL_AFTER = 150  # seconds without activity: the stand-in servers report none


def route_answer(user: str, code: int, body: str) -> str | None:
    """What is wrong with the proxy's answer for `user`'s `server`, or None: it must come from a
    server started for that user (the stand-in names the user it was started for)."""
    if code != 200:
        return f"HTTP {code}"
    if body.startswith("stand-in for ") and not body.startswith(f"stand-in for {user} "):
        return f"answered for someone else: {body.strip()[:80]!r}"
    if not body.startswith(f"stand-in for {user} "):
        # The hub's own page: no route (yet, or any more) to the server.
        return f"not the server: {body.strip()[:40]!r}"
    return None


@dataclass
class Reachability:
    """Servers the hub calls ready must answer through the proxy: one that has not, while the
    system was healthy, for `bound` seconds is a violation; a wrong user's server at once."""

    bound: float
    failing_since: dict[str, float] = field(default_factory=dict)

    def observe(
        self, server: str, problem: str | None, now: float, quiet_since: float | None
    ) -> Violation | None:
        if problem is None:
            self.failing_since.pop(server, None)
            return None
        if problem.startswith("answered for someone else"):
            return Violation("right-route", server, problem, now)
        since = self.failing_since.setdefault(server, now)
        if quiet_since is not None and now - max(since, quiet_since) > self.bound:
            return Violation("reachable", server, f"{problem} for {now - since:.0f} s", now)
        return None

    def forget_all_but(self, servers: set[str]) -> None:
        self.failing_since = {k: v for k, v in self.failing_since.items() if k in servers}


class HubSide:
    def __init__(self, stack: Stack, port_base: int, rng: random.Random, bound: float) -> None:
        self.stack, self.rng = stack, rng
        self.hub = Hub(
            stack.plane.kubeconfig,
            stack.namespace,
            state=stack.state / "hub",
            port_base=port_base,
            extra_env={
                "OPERATOR_PORT": stack.operators[0].port,
                "IDLE_CULL_TIMEOUT": CULL_AFTER,
                "IDLE_CULL_EVERY": 30,
                "SWEEP_EVERY": 20,  # within the bound, the sweeper deletes what the hub forgot
            },
        )
        self.reachability = Reachability(bound)
        self.started = 0
        self.actions: dict[str, int] = {}
        self.failed_actions = 0

    def start(self) -> None:
        self.hub.start()

    def stop(self) -> None:
        self.hub.stop()

    def swept(self) -> list[str]:
        """The notebooks the sweeper deleted: servers the hub forgot (its log says which)."""
        log = self.hub.state / "logs" / "sweeper.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [
            line.split("deleting ", 1)[1].split(":")[0] for line in lines if "deleting " in line
        ]

    def injector(self) -> Injector:
        processes = self.hub.processes
        return Injector("hub", lambda: kill(processes.hub), processes.start_hub)

    def healthy(self) -> bool:
        return http_answers(f"{self.hub.url}/hub/health")

    def servers(self) -> dict[tuple[str, str], dict] | None:
        """(user, server name) → the hub's model of each named server; None: no answer."""
        found: dict[tuple[str, str], dict] = {}
        for user in USERS:
            try:
                code, model = self.hub.api("GET", f"/users/{user}")
            except OSError:
                return None
            if code != 200:
                return None
            found |= {(user, name): server for name, server in model["servers"].items() if name}
        return found

    def step(self) -> None:
        """One user's action through the hub's REST API."""
        servers = self.servers()
        if servers is None:
            self.failed_actions += 1
            return
        user = self.rng.choice(USERS)
        mine = sorted(name for (owner, name) in servers if owner == user)
        action = self.rng.choice(["start", "start", "stop"])
        self.actions[action] = self.actions.get(action, 0) + 1
        try:
            if action == "start" and len(mine) < SERVERS_PER_USER:
                self.started += 1
                cluster = self.rng.choice(sorted(self.stack.clusters.values()))
                options = {"cluster": cluster, "profile": "chaos"}
                self.hub.api("POST", f"/users/{user}/servers/h{self.started}", options)
            elif action == "stop" and mine:
                name = self.rng.choice(mine)
                self.hub.api("DELETE", f"/users/{user}/servers/{name}", {"remove": True})
        except OSError:
            self.failed_actions += 1

    def check(self, now: float, quiet_since: float | None) -> list[Violation]:
        """Asks every server the hub calls ready through the proxy."""
        servers = self.servers()
        if servers is None:
            return []
        ready = {f"{user}/{name}" for (user, name), model in servers.items() if model["ready"]}
        self.reachability.forget_all_but(ready)
        found = []
        for key in sorted(ready):
            user, name = key.split("/")
            code, body = self.get(f"/user/{user}/{name}/")
            if violation := self.reachability.observe(
                key, route_answer(user, code, body), now, quiet_since
            ):
                found.append(violation)
        return found

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.hub.url}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError as error:
            return 0, str(error)

    def stop_all(self) -> None:
        """Every user stops every server, through the hub."""
        for user, name in self.servers() or {}:
            self.hub.api("DELETE", f"/users/{user}/servers/{name}", {"remove": True})
