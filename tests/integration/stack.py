"""The real components the integration tests run against, started by the project's own scripts:
kube-apiserver + etcd (state in .test/), Slurm (system-wide), and the operator as a process."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from batchnotebook_api import GROUP, NOTEBOOKS, VERSION
from batchnotebook_operator.schedulers.slurm import Slurm
from devstack.controlplane import ControlPlane
from devstack.host import OperatorProcess
from devstack.hub import ProcessHub
from devstack.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
# Several suites may run at once (e.g. `make test` and a developer's run): each takes its own
# state directory and ports from the environment.
STATE = REPO / os.environ.get("BATCHNOTEBOOK_TEST_STATE", ".test")
API_PORT = int(os.environ.get("BATCHNOTEBOOK_TEST_API_PORT", "17443"))
OPERATOR_PORT = int(os.environ.get("BATCHNOTEBOOK_TEST_OPERATOR_PORT", "18080"))
HUB_PORT_BASE = int(os.environ.get("BATCHNOTEBOOK_TEST_HUB_PORT", "18000"))
JOB_PYTHON = "/opt/batchnotebook/jobenv/bin/python"
STAND_IN = (REPO / "tests" / "bin" / "stand-in-server.py").read_text()


def run(*argv: str | Path, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command; with `check`, a failure fails the test with what the command printed (a
    CalledProcessError would show neither stream)."""
    result = subprocess.run([str(a) for a in argv], text=True, capture_output=True, **kwargs)
    if check and result.returncode:
        raise AssertionError(
            f"{' '.join(result.args)} exited {result.returncode}\n"
            f"--- stdout (end)\n{result.stdout[-4000:]}\n--- stderr (end)\n{result.stderr[-8000:]}"
        )
    return result


def slurm_template_starting(begin: str) -> str:
    """The default Slurm job script with `--begin=BEGIN`: the job waits in the queue (reason
    BeginTime) until then."""
    return Slurm.default_template().replace(
        "#SBATCH --no-requeue\n", f"#SBATCH --no-requeue\n#SBATCH --begin={begin}\n"
    )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until condition() is truthy; fail the test with `what` after `timeout` seconds."""
    try:
        return wait_until(condition, timeout, what, every)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None


def start_control_plane() -> Path:
    kubeconfig = ControlPlane(STATE, API_PORT).start()
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", REPO / "crds")
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return kubeconfig


def kubectl(kubeconfig: Path, *args: str | Path) -> str:
    kubectl_bin = Path(os.environ.get("BATCHNOTEBOOK_CACHE", Path.home() / ".cache/batchnotebook"))
    return run(kubectl_bin / "bin/kubectl", "--kubeconfig", kubeconfig, *args).stdout


def start_slurm() -> None:
    run(REPO / "dev/slurm.sh", "install")
    run(REPO / "dev/slurm.sh", "start")


def squeue(name: str) -> list[dict]:
    out = run(
        "squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i|%u|%T|%B"
    ).stdout
    return [
        dict(zip(("id", "user", "state", "host"), line.split("|"), strict=True))
        for line in out.splitlines()
        if line.strip()
    ]


class Operator(OperatorProcess):
    """The tests' operator, a real process (devstack.host) so that tests can kill -9 it and start
    it again; verbose, logging to STATE/logs/operator-<n>.log."""

    def __init__(self, kubeconfig: Path, port: int = OPERATOR_PORT) -> None:
        liveness = f"http://127.0.0.1:{port + 2}/healthz"
        super().__init__(
            kubeconfig,
            port,
            STATE / "logs",
            args=["--verbose", "--liveness", liveness],
            # Jobs of the second site (dev/trixie.sh) report from their own addresses, to this
            # machine's end of the site's bridge.
            env={"BATCHNOTEBOOK_LISTEN": f"0.0.0.0:{port}"},
        )


class Hub:
    """JupyterHub, configurable-http-proxy and the idle culler for the tests (devstack.hub)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        state: Path = STATE,
        port_base: int = HUB_PORT_BASE,
        venv: str = ".venv",
        extra_env: dict[str, Any] | None = None,
    ) -> None:
        import secrets

        self.state = state
        self.public_port = port_base
        self.url = f"http://127.0.0.1:{port_base}"
        self.token = secrets.token_hex(16)
        self.namespace = namespace
        settings = {
            "PUBLIC_PORT": port_base,
            "PROXY_API_PORT": port_base + 1,
            "HUB_PORT": port_base + 81,
            "OPERATOR_PORT": OPERATOR_PORT,
            "HUB_VENV": venv,
            "NAMESPACE": namespace,
            "KUBECONFIG": kubeconfig,
            "DEV_PASSWORD": secrets.token_hex(8),
            "HUB_API_TOKEN": self.token,
            "OPERATOR_SERVICE_TOKEN": secrets.token_hex(16),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
            "IDLE_CULLER_TOKEN": secrets.token_hex(16),
            "SWEEPER_TOKEN": secrets.token_hex(16),
            **(extra_env or {}),
        }
        self.password = settings["DEV_PASSWORD"]
        state.mkdir(parents=True, exist_ok=True)
        self.processes = ProcessHub(state, settings, venv=REPO / venv)
        self.processes.stop()  # a hub an earlier run of this stack left
        (state / "jupyterhub.sqlite").unlink(missing_ok=True)

    def start(self) -> None:
        self.processes.start()

    def restart(self) -> None:
        self.processes.restart_hub()

    def stop(self) -> None:
        self.processes.stop()

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read().decode()
                return answer.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text

    def server(self, user: str, name: str = "") -> dict | None:
        _, model = self.api("GET", f"/users/{user}")
        return model["servers"].get(name)


def delete_notebook(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, name: str
) -> None:
    """Deletes a BatchNotebook and its env Secret as the spawner's stop() does (the operator
    cancels the job); either may be gone already."""
    for delete, args in (
        (custom.delete_namespaced_custom_object, (GROUP, VERSION, namespace, NOTEBOOKS, name)),
        (core.delete_namespaced_secret, (f"{name}-env", namespace)),
    ):
        try:
            delete(*args)
        except client.ApiException as error:
            if error.status != 404:
                raise
