"""Long-running processes of the local stack: started in a session of their own with a pid file
and a log, known afterwards by the pid file *and* an argument that names their stack, so that a
stale pid file never makes us signal some other process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def log(tag: str, message: str) -> None:
    print(f"{tag}: {message}", flush=True)


def wait_until(check: Callable[[], T], seconds: float, what: str, every: float = 0.25) -> T:
    """Polls `check` until it gives something true; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(every)


def listens(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def http_answers(url: str, ok_only: bool = True) -> bool:
    """Whether `url` answers (with a success, or with anything when not `ok_only`)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return not ok_only  # an error page is an answer
    except OSError:
        return False
    return True


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


@dataclass(frozen=True)
class Daemon:
    """One process of the stack. `marker` is an argument only this stack's instance has (its
    state directory in some flag): together with the pid file it says the process is ours."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path
    marker: str
    env: dict[str, str] | None = None
    # e.g. ["nsenter", "--net=/run/netns/x"]: the process runs inside the node's namespace.
    prefix: Sequence[str] = ()

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if any(self.marker in word for word in command_line(pid)) else None

    def runs_with(self, prefix: str) -> bool:
        """Whether our process runs with this instance's arguments that start with `prefix`
        (a process of the same stack started with other ports would not)."""
        pid = self.pid()
        running = command_line(pid) if pid is not None else []
        return pid is not None and all(w in running for w in self.argv if w.startswith(prefix))

    def start(self) -> int:
        """Starts the process unless ours already runs; returns its pid."""
        if (pid := self.pid()) is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [*self.prefix, *self.argv]
        with self.log_file.open("a") as out:
            out.write(f"=== {time.strftime('%F %T')} starting: {' '.join(argv)}\n")
            out.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
            )
        # nsenter execs the command, so the pid stays the daemon's.
        self.pid_file.write_text(f"{process.pid}\n")
        # Until nsenter has exec'd the program (seconds for a big binary on a busy machine), the
        # command line is nsenter's, and while it execs it reads empty for a moment even after
        # /proc/PID/exe names the program: wait for both.
        program = Path(self.argv[0]).resolve()
        wait_until(
            lambda: (
                (_executable(process.pid) == program and self.pid() is not None)
                or _reaped(process.pid)
            ),
            30,
            f"{self.name} to exec",
        )
        if self.pid() is None:
            raise RuntimeError(f"{self.name} exited at once; its log ends:\n{self.tail()}")
        return process.pid

    def stop(self, grace: float = 15) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; only our own process is signalled."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        log(self.name, f"stopping (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: self.pid() is None or _reaped(pid), grace, f"{self.name} to exit")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: self.pid() is None or _reaped(pid), 5, f"{self.name} to die")
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, check: Callable[[], object], seconds: float) -> None:
        """Waits for `check`; fails with the end of the log if the process exits or times out."""

        started = self.pid()
        if started is None:
            raise RuntimeError(f"{self.name} is not running; its log ends:\n{self.tail()}")

        def ready() -> bool:
            # By pid, not command line: while the process execs, its command line is empty.
            if _reaped(started):
                raise RuntimeError(f"{self.name} exited; its log ends:\n{self.tail()}")
            return bool(check())

        try:
            wait_until(ready, seconds, f"{self.name} to be ready")
        except TimeoutError as error:
            raise RuntimeError(f"{error}; its log ends:\n{self.tail()}") from None


def _executable(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def _reaped(pid: int) -> bool:
    """True once `pid` is gone or a zombie (a child of ours that nobody waited for)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return True
    return False


def run(argv: Sequence[str | Path], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command to its end, its output captured; a failure with `check` says what it said."""
    try:
        return subprocess.run(
            [str(a) for a in argv], text=True, capture_output=True, check=check, **kwargs
        )
    except subprocess.CalledProcessError as error:
        words = " ".join(map(str, argv))
        raise RuntimeError(f"{words} exited with {error.returncode}:\n{error.stderr}") from None
