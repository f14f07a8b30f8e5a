"""The real components the integration tests run against, started by the project's own scripts:
kube-apiserver + etcd (state in .test/), Slurm (system-wide), and the operator as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchnotebook_operator import GROUP, NOTEBOOKS, VERSION
from batchnotebook_operator.schedulers.slurm import Slurm
from devstack.processes import wait_until
from kubernetes import client

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
    run(REPO / "dev/controlplane.sh", "build")
    run(REPO / "dev/controlplane.sh", "start", STATE, str(API_PORT))
    kubeconfig = STATE / "kubeconfig"
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


class Operator:
    """The operator as a real process, so tests can kill -9 it and start it again."""

    def __init__(self, kubeconfig: Path, port: int = OPERATOR_PORT) -> None:
        self.kubeconfig = kubeconfig
        self.port = port
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        assert not self.healthy_elsewhere(), f"something else already listens on {self.port}"
        self.starts += 1
        log = open(STATE / "logs" / f"operator-{self.starts}.log", "w")  # noqa: SIM115
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "BATCHNOTEBOOK_LISTEN": f"127.0.0.1:{self.port}",
            "BATCHNOTEBOOK_URL_PREFIX": "/services/batchnotebook",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchnotebook_operator",
                "--verbose",
                "--liveness",
                f"http://127.0.0.1:{self.port + 2}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_for(self.healthy, 60, "the operator to come up")

    def healthy_elsewhere(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).close()
            return True
        except OSError:
            return False

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return json.load(r)["ok"]
        except OSError:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}") from None
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return bool(self.process) and self.process.poll() is None


class Hub:
    """JupyterHub + configurable-http-proxy for the tests, started by dev/hub.sh."""

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
            **(extra_env or {}),
        }
        self.password = settings["DEV_PASSWORD"]
        state.mkdir(parents=True, exist_ok=True)
        run(REPO / "dev/hub.sh", "stop", state)
        (state / "jupyterhub.sqlite").unlink(missing_ok=True)
        (state / "env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def start(self) -> None:
        run(REPO / "dev/hub.sh", "start", self.state)

    def restart(self) -> None:
        run(REPO / "dev/hub.sh", "restart-hub", self.state)

    def stop(self) -> None:
        run(REPO / "dev/hub.sh", "stop", self.state)

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
