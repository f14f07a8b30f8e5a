"""The shared core of the batch-scheduler dialect emulators used by the tests.

Real PBS Pro, Torque, Moab, LSF and HTCondor cannot be installed on the test machine. Each
dialect's front end (`<dialect>/bin/<command>`, a small Python script) parses the real tool's
options and prints exactly what the real tool prints; this module does the scheduling underneath,
with the standard library only (the front ends run as alice or bob with Debian's /usr/bin/python3).

A front end uses it like this::

    emulator = Emulator("pbspro", environment=pbs_environment, wait_reason="Not Running: ...")
    if emulator.server_down:                 # the flag file: print the dialect's "cannot connect"
        ...
    job = emulator.submit(script, user, name, resources, queue, output_path, extra,
                          error_path=None)   # resources: ncpus, walltime_seconds, ...; extra:
                                             # anything the dialect wants back (Variable_List...)
    job.job_id                               # "<sequence>.<server>" unless job_id_format says else
    emulator.jobs()                          # every Job still remembered, oldest first
    emulator.job("12.vm")                    # one Job, or None
    emulator.cancel("12.vm", by_user)        # raises UnknownJob / NotOwner / AlreadyFinished

Spool layout (`$BNB_EMULATOR_SPOOL`, default /var/spool/bnb-emulators, one directory per
dialect, mode 1777 so every user submits into it and nobody replaces another's files):

    config.json     settings (Config below); absent keys take the defaults
    server-down     flag: the server is unreachable; every front end fails like the real one
    server-stall    flag: the server accepts connections but does not answer (commands hang)
    sequence        the job counter, incremented under flock
    schedule.lock   flock held while a waiting job decides whether it may start
    jobs/<seq>.json a job's record, written atomically, only ever by the submitting user
    jobs/<seq>.sh   the job script (mode 0600, removed when the job ends)
    jobs/<seq>.nodes   the node file (PBS_NODEFILE): the node once per process, while the job runs
    jobs/<seq>.cancel  written by whoever cancelled the job: their user name

Each job has a detached runner (double fork, setsid), a process of the submitting user, which
waits for a free slot (config `max_running`), runs the script with bash in the user's home with
the dialect's environment, and records the exit status. Cancelling writes the marker and signals
the job's process group; the runner records the outcome. Finished jobs stay visible for
`keep_finished_seconds`, like PBS's job history and Torque's keep_completed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

SPOOL_ROOT = Path(os.environ.get("BNB_EMULATOR_SPOOL", "/var/spool/bnb-emulators"))
POLL_SECONDS = 0.3
#: A record without a runner pid is a submission still being set up, for at most this long.
STARTUP_GRACE_SECONDS = 10

QUEUED, RUNNING, EXITING, COMPLETED = "queued", "running", "exiting", "completed"
ACTIVE_STATES = (QUEUED, RUNNING, EXITING)


class EmulatorError(Exception):
    """Base of the outcomes a front end turns into the dialect's own error text."""


class UnknownJob(EmulatorError):
    """No such job (never existed, or its history expired)."""


class NotOwner(EmulatorError):
    """The job belongs to another user and the caller is not root."""


class AlreadyFinished(EmulatorError):
    """The job has already ended; the exception carries its record."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.job_id)
        self.job = job


@dataclasses.dataclass(frozen=True)
class Config:
    """A dialect's settings, read from `<spool>/config.json` on every command."""

    server: str = socket.gethostname().split(".")[0]
    node: str = socket.gethostname().split(".")[0]
    max_running: int = 16
    #: the emulated node's CPUs and GPUs, for the tools that list nodes and queues
    node_cpus: int = 16
    node_gpus: int = 0
    keep_finished_seconds: int = 600
    #: how long a job shows the "exiting" state before it is completed
    exiting_seconds: float = 1.0
    #: between SIGTERM and SIGKILL when a job is cancelled or overruns its walltime
    kill_delay_seconds: float = 2.0
    #: queues (classes) the server knows; a submission to another one is refused
    queues: tuple[str, ...] = ("batch",)
    default_queue: str = "batch"

    @classmethod
    def load(cls, path: Path, defaults: dict[str, Any] | None = None) -> Config:
        """Settings from the file over the dialect's defaults over the generic ones."""
        try:
            values = {**(defaults or {}), **json.loads(path.read_text())}
        except FileNotFoundError:
            values = dict(defaults or {})
        known = {field.name for field in dataclasses.fields(cls)}
        settings = {key: value for key, value in values.items() if key in known}
        if "queues" in settings:
            settings["queues"] = tuple(settings["queues"])
        return cls(**settings)


@dataclasses.dataclass
class Job:
    """One job's record, as stored in `jobs/<seq>.json`."""

    sequence: int
    job_id: str
    name: str
    owner: str
    queue: str
    resources: dict[str, Any]
    extra: dict[str, Any]
    output_path: str
    #: where stderr goes; empty: joined with the output
    error_path: str
    workdir: str
    submit_host: str
    submit_time: float
    state: str = QUEUED
    #: why the job waits (the dialect's own words), or what happened to it
    reason: str = ""
    exec_host: str = ""
    estimated_start: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    #: the script's exit code, or None when a signal ended it
    exit_code: int | None = None
    signal: int | None = None
    cancelled_by: str = ""
    walltime_exceeded: bool = False
    #: PBS_NODEFILE and friends, written when the job starts: the node once per process of
    #: every node asked for (resources["node_file_lines"]), else once per allocated CPU
    node_file: str = ""
    runner_pid: int | None = None
    #: the process group of the running script (bash and everything it started)
    job_pgid: int | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def walltime_seconds(self) -> int | None:
        value = self.resources.get("walltime_seconds")
        return int(value) if value else None


def parse_duration(text: str) -> int:
    """Seconds in `[[[D:]H:]M:]S`, `D-HH:MM:SS` or plain seconds, as schedulers write walltimes."""
    text = text.strip()
    days = 0.0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = float(day_text)
    parts = [float(part or 0) for part in text.split(":")]
    if len(parts) == 4:
        days += parts.pop(0)
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return int(days * 86400 + seconds)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # whatever the caller's umask
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(PermissionError):  # only the creator may widen the mode
        os.fchmod(descriptor, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield descriptor
    finally:
        os.close(descriptor)


EnvironmentFunction = Callable[[Job, Config], dict[str, str]]


class Emulator:
    """One dialect's server: its spool directory, its jobs and its settings.

    `environment(job, config)` gives the scheduler's variables for a starting job (PBS_JOBID...);
    `job_id_format` makes the id from `sequence` and `server`; `wait_reason` is what a job says
    while it waits for a free slot (the dialect's comment text); `defaults` are the dialect's
    settings under config.json (e.g. its queue names).
    """

    def __init__(
        self,
        dialect: str,
        *,
        environment: EnvironmentFunction,
        job_id_format: str = "{sequence}.{server}",
        wait_reason: str = "",
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.dialect = dialect
        self.spool = SPOOL_ROOT / dialect
        self.jobs_dir = self.spool / "jobs"
        self.environment = environment
        self.job_id_format = job_id_format
        self.wait_reason = wait_reason
        self.defaults = defaults or {}

    # -- settings and fault switches ---------------------------------------------------------

    @property
    def config(self) -> Config:
        return Config.load(self.spool / "config.json", self.defaults)

    @property
    def server_down(self) -> bool:
        return (self.spool / "server-down").exists()

    def wait_while_stalled(self, limit: float = 300) -> bool:
        """A stalled server answers nothing: the command hangs until the flag goes (True) or
        `limit` seconds pass (False; a client with its own timeout then gives up)."""
        deadline = time.monotonic() + limit
        while (self.spool / "server-stall").exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # -- records -----------------------------------------------------------------------------

    def _record_path(self, sequence: int) -> Path:
        return self.jobs_dir / f"{sequence}.json"

    def _save(self, job: Job) -> None:
        _write_atomically(self._record_path(job.sequence), json.dumps(dataclasses.asdict(job)))

    def _load(self, path: Path) -> Job | None:
        try:
            return Job(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None  # expired and removed meanwhile

    def _next_sequence(self) -> int:
        with _locked(self.spool / "sequence") as descriptor:
            current = os.read(descriptor, 64).decode().strip()
            sequence = int(current or 0) + 1
            os.lseek(descriptor, 0, os.SEEK_SET)
            os.ftruncate(descriptor, 0)
            os.write(descriptor, str(sequence).encode())
        return sequence

    def jobs(self) -> list[Job]:
        """Every job the server still remembers, oldest first. A job whose runner vanished (the
        machine restarted) is shown as completed, as a real server recovers it."""
        if not self.jobs_dir.is_dir():
            return []
        config, now = self.config, time.time()
        found = []
        for path in self.jobs_dir.glob("*.json"):
            job = self._load(path)
            if job is None:
                continue
            if job.active and not self._runner_alive(job, now):
                job.state, job.end_time = COMPLETED, job.end_time or now
            expired = now - (job.end_time or now) > config.keep_finished_seconds
            if job.state == COMPLETED and expired:
                self._forget(job)
                continue
            found.append(job)
        return sorted(found, key=lambda job: job.sequence)

    def job(self, job_id: str) -> Job | None:
        """The job with this id; a bare sequence number matches too (as the real tools allow)."""
        wanted = job_id.strip()
        for job in self.jobs():
            if wanted in (job.job_id, str(job.sequence)) or job.job_id.split(".")[0] == wanted:
                return job
        return None

    @staticmethod
    def _runner_alive(job: Job, now: float) -> bool:
        if job.runner_pid is None:
            return now - job.submit_time < STARTUP_GRACE_SECONDS
        return _process_alive(job.runner_pid)

    def _forget(self, job: Job) -> None:
        """Expired history goes; whoever may delete it (its owner, root) does."""
        for suffix in (".json", ".cancel"):
            with contextlib.suppress(OSError):
                (self.jobs_dir / f"{job.sequence}{suffix}").unlink()

    # -- submit, run, cancel -----------------------------------------------------------------

    def submit(
        self,
        script_text: str,
        user: str,
        name: str,
        resources: dict[str, Any],
        queue: str,
        output_path: str | None,
        extra: dict[str, Any] | None = None,
        *,
        error_path: str | None = None,
    ) -> Job:
        """Record the job and start its runner. Must be called by `user` itself (the front end
        runs as the submitting user). `output_path` None: `<name>.o<sequence>` in the working
        directory; `error_path` None: stderr joins the output. Both may contain `{sequence}`.
        `resources["walltime_seconds"]` is enforced."""
        config = self.config
        sequence = self._next_sequence()
        job_id = self.job_id_format.format(sequence=sequence, server=config.server)
        workdir = os.getcwd()
        output = (output_path or f"{name}.o{sequence}").format(sequence=sequence)
        error = error_path.format(sequence=sequence) if error_path else ""
        job = Job(
            sequence=sequence,
            job_id=job_id,
            name=name,
            owner=user,
            queue=queue,
            resources=resources,
            extra=extra or {},
            output_path=str(Path(workdir, output)),
            error_path=str(Path(workdir, error)) if error else "",
            workdir=workdir,
            submit_host=socket.gethostname(),
            submit_time=time.time(),
        )
        script = self.jobs_dir / f"{sequence}.sh"
        _write_atomically(script, script_text, mode=0o600)  # may hold secrets: owner only
        self._save(job)
        self._start_runner(job)
        return job

    def _start_runner(self, job: Job) -> None:
        child = os.fork()
        if child:
            os.waitpid(child, 0)
            return
        try:  # first child: a new session, then the runner as its child, then gone
            os.setsid()
            if os.fork():
                os._exit(0)
            self._detach(job)
            self._run(job)
        finally:
            os._exit(0)

    @staticmethod
    def _detach(job: Job) -> None:
        devnull = os.open(os.devnull, os.O_RDWR)

        def opened(path: str) -> int:
            try:
                return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            except OSError:  # an unwritable path: the output is lost, as with a failed stage-out
                return os.open(os.devnull, os.O_WRONLY)

        output = opened(job.output_path)
        os.dup2(devnull, 0)
        os.dup2(output, 1)
        os.dup2(opened(job.error_path) if job.error_path else output, 2)
        os.chdir("/")

    def _run(self, job: Job) -> None:
        job.runner_pid = os.getpid()
        self._save(job)
        if not self._wait_for_slot(job):
            job.state, job.end_time, job.reason, job.estimated_start = (
                COMPLETED,
                time.time(),
                "",
                None,
            )
            self._save(job)
            self._remove_script(job)
            return
        config = self.config
        account = pwd.getpwnam(job.owner)
        job.node_file = str(self.jobs_dir / f"{job.sequence}.nodes")
        # A job on several nodes runs here all the same, its node file as long as the real one.
        lines = int(job.resources.get("node_file_lines") or job.resources.get("ncpus") or 1)
        _write_atomically(Path(job.node_file), f"{config.node}\n" * lines)
        environment = {
            "HOME": account.pw_dir,
            "USER": job.owner,
            "LOGNAME": job.owner,
            "SHELL": account.pw_shell or "/bin/bash",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **self.environment(job, config),
        }
        process = subprocess.Popen(
            ["/bin/bash", str(self.jobs_dir / f"{job.sequence}.sh")],
            cwd=account.pw_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        job.job_pgid = process.pid
        self._save(job)
        deadline = job.start_time + job.walltime_seconds if job.walltime_seconds else None
        while process.poll() is None:
            if deadline and time.time() > deadline and not job.walltime_exceeded:
                job.walltime_exceeded = True
                self._save(job)
                self._terminate(process, config.kill_delay_seconds)
            time.sleep(POLL_SECONDS)
        # Whatever the script left behind in its group goes with it, as a mom kills the session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.returncode
        job.exit_code, job.signal = (code, None) if code >= 0 else (None, -code)
        job.cancelled_by = self._cancelled_by(job)
        job.state, job.end_time = EXITING, time.time()
        self._save(job)
        time.sleep(config.exiting_seconds)
        job.state = COMPLETED
        self._save(job)
        self._remove_script(job)

    @staticmethod
    def _terminate(process: subprocess.Popen, kill_delay: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(kill_delay)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def _wait_for_slot(self, job: Job) -> bool:
        """Wait, first come first served, until fewer than max_running jobs run; then mark the
        job running. False if it was cancelled while it waited."""
        while True:
            if self._cancelled_by(job):
                job.cancelled_by = self._cancelled_by(job)
                return False
            with _locked(self.spool / "schedule.lock"):
                config, others = self.config, [j for j in self.jobs() if j.sequence != job.sequence]
                running = [j for j in others if j.state in (RUNNING, EXITING)]
                ahead = [j for j in others if j.state == QUEUED and j.sequence < job.sequence]
                if len(running) < config.max_running and not ahead:
                    job.state, job.start_time = RUNNING, time.time()
                    job.exec_host, job.reason, job.estimated_start = config.node, "", None
                    self._save(job)
                    return True
            estimate = self._estimated_start(running, config)
            if job.reason != self.wait_reason or job.estimated_start != estimate:
                job.reason, job.estimated_start = self.wait_reason, estimate
                self._save(job)
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _estimated_start(running: list[Job], config: Config) -> float | None:
        """When the first slot frees, from the walltimes of the running jobs (as a scheduler's
        backfill estimate does); None if some running job has no walltime."""
        ends = [
            (j.start_time or 0) + j.walltime_seconds
            for j in running
            if j.walltime_seconds and j.start_time
        ]
        if len(running) < config.max_running or len(ends) < len(running) or not ends:
            return None
        return float(int(min(ends)))

    def _cancelled_by(self, job: Job) -> str:
        try:
            return (self.jobs_dir / f"{job.sequence}.cancel").read_text().strip()
        except FileNotFoundError:
            return ""

    def _remove_script(self, job: Job) -> None:
        for suffix in (".sh", ".nodes"):
            with contextlib.suppress(FileNotFoundError):
                (self.jobs_dir / f"{job.sequence}{suffix}").unlink()

    def cancel(self, job_id: str, by_user: str) -> Job:
        """Ask the job to end: the runner of a waiting job drops it, a running job's process
        group gets SIGTERM (SIGKILL after kill_delay_seconds). Returns the record as it was."""
        job = self.job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        if by_user != "root" and by_user != job.owner:
            raise NotOwner(job_id)
        if not job.active or job.state == EXITING:
            raise AlreadyFinished(job)
        marker = self.jobs_dir / f"{job.sequence}.cancel"
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(descriptor, by_user.encode())
            os.close(descriptor)
        if job.state == RUNNING and job.job_pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.job_pgid, signal.SIGTERM)
            self._kill_later(job.job_pgid, self.config.kill_delay_seconds)
        return job

    @staticmethod
    def _kill_later(pgid: int, delay: float) -> None:
        """SIGKILL the group after the delay unless it is gone, without holding up the caller."""
        child = os.fork()
        if child:
            os.waitpid(child, 0)
            return
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for descriptor in (0, 1, 2):
                os.dup2(devnull, descriptor)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    os._exit(0)
                time.sleep(POLL_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        finally:
            os._exit(0)


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def fail(message: str, status: int) -> NoReturn:
    """Print the dialect's error text on stderr and exit with its status."""
    if message:
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
    sys.exit(status)


def install(dialects: list[str], root: Path = SPOOL_ROOT) -> None:
    """Create the spool directories (root only; idempotent): world-writable and sticky, with the
    shared lock and counter files writable by every user."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for dialect in dialects:
        spool = root / dialect
        for directory in (spool, spool / "jobs"):
            directory.mkdir(exist_ok=True)
            os.chmod(directory, 0o1777)
        for shared in ("sequence", "schedule.lock"):
            (spool / shared).touch()
            os.chmod(spool / shared, 0o666)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    root = SPOOL_ROOT
    if arguments[1:3] and arguments[1] == "--root":
        root, arguments = Path(arguments[2]), arguments[:1] + arguments[3:]
    if arguments[:1] != ["install"] or len(arguments) < 2:
        fail(f"usage: {sys.argv[0]} install [--root DIR] DIALECT...", 2)
    install(arguments[1:], root)
