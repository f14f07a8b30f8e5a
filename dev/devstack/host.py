"""The operator as a process of this machine, for the stacks that run it so (the tests' process
stack, the chart test's ServiceAccount operator, the benchmark): started by its Popen, stopped
and killed by it, so that a fault test can kill -9 it and start it again. `make dev` runs the
operator in a pod instead (deploy.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .paths import REPO
from .processes import http_answers, wait_until


class OperatorProcess:
    """`python -m batchnotebook_operator ARGS` serving on 127.0.0.1:PORT (its liveness endpoint
    on PORT + 2 unless ARGS say otherwise); each start logs to LOG_DIR/NAME-<n>.log."""

    def __init__(
        self,
        kubeconfig: Path,
        port: int,
        log_dir: Path,
        *,
        name: str = "operator",
        python: str | Path = sys.executable,
        args: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.port, self.log_dir, self.name = kubeconfig, port, log_dir, name
        self.python = python
        self.args = list(args or ["--liveness", f"http://127.0.0.1:{port + 2}/healthz"])
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log_path = log_dir / f"{name}-0.log"

    def start(self) -> None:
        if self.answers():
            raise RuntimeError(f"something else already listens on 127.0.0.1:{self.port}")
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "BATCHNOTEBOOK_LISTEN": f"127.0.0.1:{self.port}",
            "BATCHNOTEBOOK_URL_PREFIX": "/services/batchnotebook",
            **self.env,
        }
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(self.python), "-m", "batchnotebook_operator", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        wait_until(self.healthy, 60, f"the operator to come up (log: {self.log_path})")

    def answers(self) -> bool:
        """Whether anything serves the operator's health endpoint on its port."""
        return http_answers(f"http://127.0.0.1:{self.port}/healthz")

    def healthy(self) -> bool:
        if self.process and self.process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {self.process.returncode}; see {self.log_path}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return json.load(r)["ok"]
        except OSError:
            return False

    @property
    def alive(self) -> bool:
        return bool(self.process) and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the operator was never started")
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash would end it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
