"""JupyterHub with configurable-http-proxy, jupyterhub-idle-culler and the sweeper as processes of
this machine, for the tests' process stacks and the benchmark (`make dev` runs Zero to JupyterHub
in pods instead, deploy.py). dev/hub.sh installs the proxy; the settings go to the processes'
environment, where the hub's configuration (dev/jupyterhub_config.py) reads them. The proxy runs
on its own so that it outlives a restarted hub, as Zero to JupyterHub's proxy pod does."""

from __future__ import annotations

import shutil
from pathlib import Path

from .paths import CACHE, REPO
from .processes import Daemon, http_answers, run

CHP_VERSION = "5.3.0"
CHP = (
    CACHE
    / "node"
    / f"chp-{CHP_VERSION}"
    / "node_modules/configurable-http-proxy/bin/configurable-http-proxy"
)
CONFIG = REPO / "dev" / "jupyterhub_config.py"


def install() -> None:
    run([REPO / "dev" / "hub.sh", "install"])


class ProcessHub:
    """The proxy, the hub, the sweeper and (unless IDLE_CULL_TIMEOUT is 0) the idle culler of one
    stack, with pid files in STATE/run and logs in STATE/logs. SETTINGS: PUBLIC_PORT,
    PROXY_API_PORT, HUB_PORT, CONFIGPROXY_AUTH_TOKEN, IDLE_CULLER_TOKEN, SWEEPER_TOKEN,
    NAMESPACE and what CONFIG reads."""

    def __init__(
        self,
        state: Path,
        settings: dict[str, object],
        config: Path = CONFIG,
        venv: Path = REPO / ".venv",
    ) -> None:
        self.state = state.resolve()
        self.env = {
            **{key: str(value) for key, value in settings.items()},
            "STATE": str(self.state),
        }
        public, api, hub = (self.env[key] for key in ("PUBLIC_PORT", "PROXY_API_PORT", "HUB_PORT"))
        self.url = f"http://127.0.0.1:{public}"
        self.hub_url = f"http://127.0.0.1:{hub}"
        proxy, hub, culler, sweeper = markers(self.state)
        node = shutil.which("node") or "/usr/bin/node"
        python = str(venv / "bin" / "python")
        self.proxy = self._daemon(
            "proxy",
            [node, str(CHP), "--ip=127.0.0.1", f"--port={public}", "--api-ip=127.0.0.1",
             f"--api-port={api}", f"--default-target={self.hub_url}",
             f"--error-target={self.hub_url}/hub/error", proxy],
            proxy,
        )  # fmt: skip
        self.hub = self._daemon("hub", [python, "-m", "jupyterhub", "-f", str(config), hub], hub)
        timeout = self.env.get("IDLE_CULL_TIMEOUT", "3600")
        self.culler = None
        if timeout != "0":
            self.culler = self._daemon(
                "culler",
                [python, "-m", "jupyterhub_idle_culler", f"--url={self.hub_url}/hub/api",
                 f"--timeout={timeout}", f"--cull-every={self.env.get('IDLE_CULL_EVERY', '300')}",
                 culler],
                culler,
                JUPYTERHUB_API_TOKEN=self.env["IDLE_CULLER_TOKEN"],
            )  # fmt: skip

        # Deletes the BatchNotebooks of servers the hub forgot (batchnotebook_spawner.sweep).
        self.sweeper = self._daemon(
            "sweeper",
            [python, "-m", "batchnotebook_spawner.sweep", f"--url={self.hub_url}/hub/api",
             f"--namespace={self.env['NAMESPACE']}", f"--every={self.env.get('SWEEP_EVERY', '60')}",
             sweeper],
            sweeper,
            JUPYTERHUB_API_TOKEN=self.env["SWEEPER_TOKEN"],
        )  # fmt: skip

    def _daemon(self, name: str, argv: list[str], marker: str, **env: str) -> Daemon:
        return Daemon(
            name, argv, self.state / "run", self.state / "logs", marker, env={**self.env, **env}
        )

    def start(self) -> None:
        """Starts what does not run yet, each once the one before answers."""
        self.proxy.start()
        self.proxy.wait_ready(lambda: http_answers(f"{self.url}/", ok_only=False), 30)
        self.start_hub()
        if self.culler:
            self.culler.start()
        self.sweeper.start()

    def start_hub(self) -> None:
        self.hub.start()
        self.hub.wait_ready(lambda: http_answers(f"{self.url}/hub/health"), 90)

    def restart_hub(self) -> None:
        """Only the hub: the proxy, the culler, the sweeper and the servers stay."""
        self.hub.stop()
        self.start_hub()

    def stop(self) -> None:
        stop(self.state)


def markers(state: Path) -> tuple[str, str, str, str]:
    """An argument of the proxy, the hub, the culler and the sweeper that names the stack, so that
    they are known by their pid file and it (processes.Daemon) with no other setting at hand."""
    return (
        f"--pid-file={state}/run/proxy.pid",  # the proxy writes it too, the same pid
        f"--JupyterHub.db_url=sqlite:///{state}/jupyterhub.sqlite",
        # Read only with --ssl-enabled, which the culler is not given.
        f"--internal-certs-location={state}/internal-ssl",
        f"--tag={state}/sweeper",
    )


def stop(state: Path) -> None:
    """Stops a stack's sweeper, culler, hub and proxy, whatever started them (a test run that was
    killed leaves them running)."""
    state = state.resolve()
    for name, marker in zip(
        ("sweeper", "culler", "hub", "proxy"), reversed(markers(state)), strict=True
    ):
        Daemon(name, [], state / "run", state / "logs", marker).stop()
