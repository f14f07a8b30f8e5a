"""Slurm through slurmrestd (auth/jwt): every call carries a short-lived JWT for the user it acts
for, signed with the cluster's HS256 key; the one batched query per poll acts for `queryUser`.

slurmrestd 22.05 ignores `#SBATCH` lines in the script it is given: the job's options must travel
as JSON properties. They are read from the rendered script's own directives (the same script the
command-line path gives sbatch) and passed verbatim, because slurmrestd parses each value with
the same code (slurm_opt.c) that parses sbatch's options.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import yarl
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import accounts
from batchnotebook_api.errors import InvalidOptions

from .client import COMMANDS, LATENCY, SchedulerClient, notebook_turns
from .errors import SchedulerUnavailable, SubmissionRefused
from .kube import Kube
from .model import Availability, JobState, JobStatus, PartitionLoad, QueuedJob, availability
from .schedulers.base import first_exec_host
from .schedulers.slurm import NO_VALUE, STATES, Slurm, gpu_count
from .transports import operator_namespace

log = logging.getLogger(__name__)

#: Tokens are renewed after this fraction of their lifetime, so none is used close to its end.
RENEW_AFTER = 0.8
#: What `sudo -u user sbatch` gives a job on Debian (sudo's secure_path): the same PATH here.
JOB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How far back accounting is searched for a job by name, as the command-line path does.
ACCOUNTING_WINDOW = "now-7days"

# Slurm error numbers (slurm_errno.h) that mean "slurmctld or slurmdbd gave no answer about the
# job": a request must then change nothing. Every other error is Slurm's answer.
NO_ANSWER_RANGES = (
    range(-1, 1),  # "Unspecified error": also what a token slurmctld rejects turns into
    range(1000, 2000),  # communication, protocol and authentication failures
    range(5000, 7001),  # socket errors (5005 is a rejected token), auth plugins, 7000 no database
)
NO_ANSWER_NUMBERS = frozenset(
    {
        2007,  # Unable to create job record, try again
        2027,  # Slurm backup controller in standby mode
        2103,  # Job update not available right now ... try again in a bit
        2131,  # Controller is in standby mode, try a different controller
    }
)
# Errors that come with a good answer: slurmdbd's "Nothing found with query" (an empty list) and
# "Job is in held state" beside the id of a job submitted with --hold.
NOTES = frozenset({9003, 2042})
# The errors a token signed with the wrong key (or for the wrong user) produces: worth a hint.
TOKEN_SUSPECT_NUMBERS = frozenset({-1, 1007, 5005}) | frozenset(range(6000, 7000))
# A node with one of these state flags takes no new job: its CPUs and GPUs are not idle (sinfo
# counts them as "other").
UNAVAILABLE_NODE_FLAGS = frozenset({"DRAIN", "NOT_RESPONDING", "MAINTENANCE", "POWERING_DOWN"})

# sbatch option → v0.0.38 job property. Only options that slurmrestd 22.05 was seen to apply as
# sbatch does are here; any other directive is refused rather than dropped. Left out on purpose:
# --no-requeue (slurmrestd keeps the job requeueable) and --signal (it refuses B:USR1@60).
OPTION_PROPERTIES = {
    "account": "account",
    "chdir": "current_working_directory",
    "comment": "comment",
    "constraint": "constraints",
    "cpus-per-gpu": "cpus_per_gpu",
    "cpus-per-task": "cpus_per_task",
    "dependency": "dependency",
    "error": "standard_error",
    "get-user-env": "get_user_environment",
    "gpus": "gpus",
    "gpus-per-node": "gpus_per_node",
    "gpus-per-task": "gpus_per_task",
    "gres": "gres",
    "input": "standard_input",
    "job-name": "name",
    "licenses": "licenses",
    "mail-type": "mail_type",
    "mail-user": "mail_user",
    "mem": "memory_per_node",
    "mem-per-cpu": "memory_per_cpu",
    "mem-per-gpu": "memory_per_gpu",
    "nice": "nice",
    "ntasks": "tasks",
    "ntasks-per-node": "tasks_per_node",
    "open-mode": "open_mode",
    "output": "standard_output",
    "partition": "partition",
    "qos": "qos",
    "reservation": "reservation",
    "time": "time_limit",
    "time-min": "time_minimum",
    "wckey": "wckey",
}
FLAG_PROPERTIES = {"hold": ("hold", True)}
# Flags slurmrestd 22.05 does not apply, whose purpose is kept another way, so that the default
# template works here too: --no-requeue (the job stays requeueable, but the launcher refuses to
# run a job a second time).
KEPT_OTHERWISE = frozenset({"no-requeue"})
SHORT_OPTIONS = {
    "A": "account",
    "C": "constraint",
    "c": "cpus-per-task",
    "D": "chdir",
    "d": "dependency",
    "e": "error",
    "G": "gpus",
    "H": "hold",
    "i": "input",
    "J": "job-name",
    "L": "licenses",
    "n": "ntasks",
    "o": "output",
    "p": "partition",
    "q": "qos",
    "t": "time",
}


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    renew_at: float


class TokenSigner:
    """HS256 JWTs as Slurm's auth/jwt reads them (`sun` = user, `iat`, `exp`), one per user,
    reused until RENEW_AFTER of their lifetime has passed. A token is a login as that user: none
    is ever signed for a name the cluster's userMapping denies (root, the scheduler's admin),
    except the query user's own, which only the client's listings use."""

    def __init__(
        self,
        key: bytes,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
        *,
        cluster_spec: dict | None = None,
        query_user: str = accounts.DEFAULT_QUERY_USER,
    ) -> None:
        if not key:
            raise ValueError("the JWT key is empty")
        self.key = key
        self.lifetime = lifetime_seconds
        self.clock = clock
        self.cluster_spec = cluster_spec or {}
        self.query_user = query_user
        self._tokens: dict[str, Token] = {}

    def token(self, user: str) -> str:
        if user != self.query_user:
            accounts.check(self.cluster_spec, user)  # AccountRefused: no token at all
        now = self.clock()
        cached = self._tokens.get(user)
        if cached is None or now >= cached.renew_at:
            issued = int(now)
            value = jwt.encode(
                {"sun": user, "iat": issued, "exp": issued + self.lifetime},
                self.key,
                algorithm="HS256",
            )
            cached = Token(value, issued + self.lifetime, issued + self.lifetime * RENEW_AFTER)
            self._tokens[user] = cached
        return cached.value


# ---------------------------------------------------------------------------------------------
# The job script's directives → job properties


def script_directives(script: str) -> list[str]:
    """The arguments of the script's `#SBATCH` lines, read as sbatch reads them: up to the first
    line that is neither blank nor a comment."""
    arguments: list[str] = []
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            arguments += shlex.split(line.removeprefix("#SBATCH"), comments=True)
        elif line.startswith(("#PBS", "#BSUB")):
            raise InvalidOptions(
                f"the job script has {line.split()[0]} directives, which sbatch translates but "
                "slurmrestd does not: use #SBATCH"
            )
        elif line.strip() and not line.lstrip().startswith("#"):
            break
    return arguments


def job_properties(arguments: list[str]) -> dict[str, Any]:
    """sbatch options → slurmrestd v0.0.38 job properties, values left for Slurm to parse."""
    properties: dict[str, Any] = {}
    remaining = list(arguments)
    while remaining:
        argument = remaining.pop(0)
        value: str | None = None
        if argument.startswith("--"):
            name, has_value, inline = argument[2:].partition("=")
            value = inline if has_value else None
        elif argument.startswith("-") and len(argument) > 1 and argument[1] in SHORT_OPTIONS:
            name = SHORT_OPTIONS[argument[1]]
            value = argument[2:] or None
        else:
            raise InvalidOptions(f"#SBATCH {argument}: not an option")
        if name in KEPT_OTHERWISE and value is None:
            continue
        if name in FLAG_PROPERTIES:
            if value is not None:
                raise InvalidOptions(f"#SBATCH --{name} takes no value")
            key, flag = FLAG_PROPERTIES[name]
            properties[key] = flag
            continue
        if name not in OPTION_PROPERTIES:
            raise InvalidOptions(
                f"#SBATCH --{name} is not passed to slurmrestd by this operator; the options it "
                f"passes: {', '.join(sorted([*OPTION_PROPERTIES, *FLAG_PROPERTIES]))}"
            )
        if value is None:
            if not remaining:
                raise InvalidOptions(f"#SBATCH --{name} needs a value")
            value = remaining.pop(0)
        properties[OPTION_PROPERTIES[name]] = value
    return properties


# ---------------------------------------------------------------------------------------------
# Answers


def _text(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    return "" if text.lower() in NO_VALUE else text


def _state_name(value: Any) -> str:
    return str(value or "").upper()


def _wait_status_exit_code(status: Any) -> int | None:
    """slurmctld's exit_code is a wait(2) status: a signal becomes 128 + its number."""
    if not isinstance(status, int):
        return None
    signal = status & 0x7F
    return 128 + signal if signal else status >> 8


def _accounting_exit_code(exit_code: Any, state: JobState) -> int | None:
    if not isinstance(exit_code, dict):
        return None
    if exit_code.get("status") == "SIGNALED":
        signal = (exit_code.get("signal") or {}).get("signal_id")
        return 128 + signal if isinstance(signal, int) else None
    code = exit_code.get("return_code")
    if not isinstance(code, int):
        return None
    # dbv0.0.38 in Slurm 22.05 reports a job that exited 3 as SUCCESS/0 (sacct: 3:0): a zero
    # that contradicts a failed job is unknown, not 0.
    return None if code == 0 and state is JobState.FAILED else code


def _epoch(value: Any) -> dt.datetime | None:
    """Slurm's seconds since the epoch; 0 or absent: not known."""
    if isinstance(value, int) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def parse_jobs(answer: dict) -> Iterator[JobStatus]:
    """Every job of `GET /slurm/<version>/jobs` (or `/job/<id>`)."""
    for job in answer.get("jobs") or []:
        raw = _state_name(job.get("job_state"))
        state = STATES.get(raw, JobState.UNKNOWN)
        pending = state is JobState.PENDING
        start = job.get("start_time")
        yield JobStatus(
            job_id=str(job.get("job_id", "")),
            name=job.get("name") or "",
            user=job.get("user_name") or "",
            state=state,
            raw_state=raw,
            reason=_text(job.get("state_reason")),
            exec_host=""
            if pending
            else first_exec_host(_text(job.get("batch_host")) or _text(job.get("nodes"))),
            expected_start=dt.datetime.fromtimestamp(start, dt.UTC)
            if pending and isinstance(start, int) and start > 0
            else None,
            exit_code=_wait_status_exit_code(job.get("exit_code")) if state.ended else None,
            submitted_at=_epoch(job.get("submit_time")),
        )


def parse_accounting(answer: dict) -> Iterator[JobStatus]:
    """Every job of `GET /slurmdb/<version>/jobs`; steps are not jobs and are not read."""
    for job in answer.get("jobs") or []:
        job_state = job.get("state")
        raw = _state_name(job_state.get("current") if isinstance(job_state, dict) else job_state)
        state = STATES.get(raw, JobState.UNKNOWN)
        cancelled_by = _text(job.get("kill_request_user"))
        nodes = _text(job.get("nodes"))
        yield JobStatus(
            job_id=str(job.get("job_id", "")),
            name=job.get("name") or "",
            user=job.get("user") or "",
            state=state,
            raw_state=raw,
            reason=f"{raw} by {cancelled_by}"
            if state is JobState.CANCELLED and cancelled_by
            else _text(job_state.get("reason") if isinstance(job_state, dict) else ""),
            exec_host="" if nodes == "None assigned" else first_exec_host(nodes),
            exit_code=_accounting_exit_code(job.get("exit_code"), state),
            submitted_at=_epoch((job.get("time") or {}).get("submission")),
        )


def parse_partition_loads(partitions: dict, nodes: dict) -> list[PartitionLoad]:
    """Every partition of `GET /slurm/<version>/partitions`, with the resources of its nodes
    from `GET /slurm/<version>/nodes`."""
    loads = {
        str(p.get("name")): dict.fromkeys(
            ("cpus_idle", "cpus_total", "gpus_idle", "gpus_total", "nodes_idle", "nodes_total"), 0
        )
        | {"state": str(p.get("state") or "").lower()}
        for p in partitions.get("partitions") or []
        if p.get("name")
    }
    for node in nodes.get("nodes") or []:
        state = str(node.get("state") or "").lower()
        usable = state in ("idle", "mixed") and not UNAVAILABLE_NODE_FLAGS & set(
            node.get("state_flags") or []
        )
        cpus, gpus = int(node.get("cpus") or 0), gpu_count(_text(node.get("gres")))
        idle_gpus = max(0, gpus - gpu_count(_text(node.get("gres_used")))) if usable else 0
        for name in node.get("partitions") or []:
            load = loads.get(name)
            if load is None:
                continue
            load["cpus_total"] += cpus
            load["cpus_idle"] += int(node.get("idle_cpus") or 0) if usable else 0
            load["gpus_total"] += gpus
            load["gpus_idle"] += idle_gpus
            load["nodes_total"] += 1
            load["nodes_idle"] += usable and state == "idle"
    return [PartitionLoad(name=name, **load) for name, load in loads.items()]


def parse_queued_jobs(answer: dict) -> list[QueuedJob]:
    """Every pending and running job of `GET /slurm/<version>/jobs`, the pending ones in the
    order Slurm would start them: highest priority, then earliest submitted."""
    pending, running = [], []
    for job in answer.get("jobs") or []:
        state = STATES.get(_state_name(job.get("job_state")), JobState.UNKNOWN)
        if state not in (JobState.PENDING, JobState.RUNNING):
            continue
        queued = QueuedJob(
            str(job.get("job_id", "")),
            tuple(str(job.get("partition") or "").split(",")),
            state is JobState.PENDING,
        )
        order = (-int(job.get("priority") or 0), int(job.get("submit_time") or 0), job["job_id"])
        (pending if queued.pending else running).append((order, queued))
    pending.sort(key=lambda entry: entry[0])
    return [job for _order, job in pending + running]


@dataclass(frozen=True)
class Answer:
    """One slurmrestd response: its HTTP status, its JSON (if any) and Slurm's errors in it."""

    request: str
    status: int
    body: dict = field(default_factory=dict)
    text: str = ""

    @classmethod
    def read(cls, request: str, status: int, raw: bytes) -> Answer:
        text = raw.decode(errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return cls(request, status, body if isinstance(body, dict) else {}, text.strip())

    @property
    def errors(self) -> list[dict]:
        return [e for e in self.body.get("errors") or [] if isinstance(e, dict)]

    @staticmethod
    def number(error: dict) -> int:
        # Errors of the job parser say error_code, the others error_number.
        value = error.get("error_number", error.get("error_code"))
        return value if isinstance(value, int) else -1

    @property
    def problems(self) -> list[dict]:
        return [e for e in self.errors if self.number(e) not in NOTES]

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.body) and not self.problems

    @property
    def no_answer(self) -> bool:
        """Nothing about the job was said: the request must change nothing."""
        if self.status in (401, 403, 404, 405) or self.status >= 502 or not self.body:
            return True
        if self.status >= 500 and not self.problems:
            return True  # an error without Slurm's word on it
        return any(
            any(self.number(e) in r for r in NO_ANSWER_RANGES)
            or self.number(e) in NO_ANSWER_NUMBERS
            for e in self.errors
        )

    def message(self) -> str:
        """Slurm's own words, with the request they answer."""
        said = []
        for error in self.problems:
            description, error_text = _text(error.get("description")), _text(error.get("error"))
            if description and error_text and not description.endswith(error_text):
                said.append(f"{description}: {error_text}")
            else:
                said.append(description or error_text)
        words = "; ".join(w for w in said if w) or self.text[:300] or "no details"
        hint = ""
        if self.status == 401 or any(self.number(e) in TOKEN_SUSPECT_NUMBERS for e in self.errors):
            hint = " (slurmrestd answers this way to a token signed with the wrong key, too)"
        return f"slurmrestd {self.request}: HTTP {self.status}: {words}{hint}"


# ---------------------------------------------------------------------------------------------
# The client


class SlurmRestClient(SchedulerClient):
    """SchedulerClient over slurmrestd's REST API."""

    def __init__(self, name: str, spec: dict, kube: Kube | None = None) -> None:
        self.name = name
        self.spec = spec
        connection = spec.get("connection", {})
        rest = connection.get("slurmrest", {})
        #: The Slurm dialect, for job names and the default job template.
        self.scheduler = Slurm(spec.get("commands"))
        self.misconfigured = (
            ""
            if spec.get("scheduler", "slurm") == "slurm"
            else f"a slurmrest connection needs scheduler: slurm, not {spec.get('scheduler')!r}"
        )
        self.base_url = rest.get("url", "").rstrip("/")
        self.api_version = rest.get("apiVersion", "v0.0.38")
        key_secret = rest.get("jwtKeySecret", {})
        self.key_namespace = key_secret.get("namespace") or operator_namespace()
        self.key_secret = key_secret.get("name", "")
        self.key_name = key_secret.get("key", "jwt_hs256.key")
        self.token_lifetime = int(rest.get("tokenLifetimeSeconds", 1800))
        self.query_user = rest.get("queryUser", accounts.DEFAULT_QUERY_USER)
        self.home_directory = rest.get("homeDirectory", "")
        self.timeout = float(connection.get("commandTimeoutSeconds", 30))
        self.kube = kube
        self.turns = asyncio.Semaphore(notebook_turns(spec))
        self._signer: TokenSigner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- plumbing ---------------------------------------------------------------------------

    async def signer(self) -> TokenSigner:
        """The cluster's key, read from its Secret once and again after a token was refused
        (the admin may have rotated it)."""
        if self._signer is None:
            where = f"Secret {self.key_namespace}/{self.key_secret}"
            if self.kube is None:
                raise SchedulerUnavailable(f"no Kubernetes client to read the JWT key ({where})")
            try:
                values = await self.kube.secret_bytes(self.key_namespace, self.key_secret)
            except ApiException as error:
                raise SchedulerUnavailable(
                    f"cannot read the JWT key from {where}: {error.reason}"
                ) from error
            if not values.get(self.key_name):
                raise SchedulerUnavailable(f"{where} has no JWT key {self.key_name!r}")
            self._signer = TokenSigner(
                values[self.key_name],
                self.token_lifetime,
                cluster_spec=self.spec,
                query_user=self.query_user,
            )
        return self._signer

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json"},
            )
        return self._session

    async def _call(
        self,
        command: str,
        method: str,
        path: str,
        user: str,
        *,
        query: dict[str, str] | None = None,
        body: dict | None = None,
    ) -> Answer:
        """One request as `user`. Raises SchedulerUnavailable if slurmrestd does not answer."""
        if self.misconfigured:
            raise SchedulerUnavailable(self.misconfigured)
        # slurmrestd 22.05 refuses a raw comma in a query ("Unable to parse query."): every
        # value is percent-encoded here and the URL is sent as it is.
        encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in (query or {}).items())
        url = yarl.URL(f"{self.base_url}{path}{'?' + encoded if encoded else ''}", encoded=True)
        request = f"{method} {path} as {user}"
        headers = {
            "X-SLURM-USER-NAME": user,
            "X-SLURM-USER-TOKEN": (await self.signer()).token(user),
        }
        started = time.monotonic()
        try:
            async with self.session().request(method, url, headers=headers, json=body) as answer:
                result = Answer.read(request, answer.status, await answer.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            COMMANDS.labels(self.name, command, "timeout").inc()
            raise SchedulerUnavailable(
                f"slurmrestd at {self.base_url} did not answer {request}: "
                f"{error or type(error).__name__}"
            ) from error
        finally:
            LATENCY.labels(self.name, command).observe(time.monotonic() - started)
        COMMANDS.labels(self.name, command, "ok" if result.ok else "error").inc()
        if not result.ok:
            log.info("cluster %s: %s", self.name, result.message()[:500])
        if result.status == 401 or any(
            Answer.number(e) in TOKEN_SUSPECT_NUMBERS for e in result.errors
        ):
            self._signer = None  # read the key again before the next request
        return result

    def _path(self, api: str, rest: str) -> str:
        return f"/{api}/{self.api_version}/{rest}"  # slurmdb's plugin has the same version

    @staticmethod
    def _expect(answer: Answer) -> dict:
        if not answer.ok:
            raise SchedulerUnavailable(answer.message())
        return answer.body

    # -- what the handlers use --------------------------------------------------------------

    def job_for(
        self, script: str, user: str, environment: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The submit request's `job`: the script's own options, where it starts, and the
        server's `environment` (its tokens): in the job's environment, never in the script.
        Slurm keeps a job's environment readable by SlurmUser only (slurmctld's state files),
        stores it in accounting only with AccountingStoreFlags=job_env, and shows it there
        (`sacct --env-vars`) to the job's owner and administrators only."""
        properties = job_properties(script_directives(script))
        if not self.home_directory:
            raise InvalidOptions(
                "the cluster's slurmrest connection has no homeDirectory: slurmrestd needs the "
                "directory a job starts in and cannot look up a user's home"
            )
        home = self.home_directory.replace("{user}", user)
        properties.setdefault("current_working_directory", home)
        properties["environment"] = {
            "PATH": JOB_PATH,
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            **(environment or {}),
        }
        return properties

    async def submit(
        self, script: str, user: str, *, environment: dict[str, str] | None = None, uid: str = ""
    ) -> str:
        """Submit as `user`, with `user`'s token: the job runs as that user."""
        accounts.check(self.spec, user)  # the query user's token signs no job
        job = self.job_for(script, user, environment)
        answer = await self._call(
            "submit",
            "POST",
            self._path("slurm", "job/submit"),
            user,
            body={"job": job, "script": script},
        )
        job_id = answer.body.get("job_id")
        if answer.status == 200 and isinstance(job_id, int):
            return str(job_id)  # errors beside a job id are notes, e.g. "held"
        if answer.no_answer or answer.status == 200:
            raise SchedulerUnavailable(answer.message())
        raise SubmissionRefused(answer.message())

    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        """State of every job named by `tags`, by job id: one listing of all jobs (slurmrestd
        cannot filter by name), read with queryUser's token. `job_ids` is not needed."""
        wanted = set(tags)
        if not wanted:
            return {}
        answer = await self._call("query", "GET", self._path("slurm", "jobs"), self.query_user)
        body = self._expect(answer)
        if not isinstance(body.get("jobs"), list):
            raise SchedulerUnavailable(f"slurmrestd {answer.request}: no job list in the answer")
        return {
            job.job_id: self.scheduler.marked(job) for job in parse_jobs(body) if job.name in wanted
        }

    async def accounting(
        self, *, job_ids: Iterable[str] = (), tags: Iterable[str] = ()
    ) -> list[JobStatus]:
        """What accounting remembers of jobs the queue forgot: one slurmdbd query."""
        job_ids, tags = sorted(set(job_ids)), sorted(set(tags))
        if not job_ids and not tags:
            return []
        query = {"skip_steps": "true"}
        if job_ids:
            query["step"] = ",".join(job_ids)  # slurmdbd's job-id list, as sacct --jobs
        if tags:
            query |= {"job_name": ",".join(tags), "start_time": ACCOUNTING_WINDOW}
        answer = await self._call(
            "accounting", "GET", self._path("slurmdb", "jobs"), self.query_user, query=query
        )
        # A refused token comes back as HTTP 200 with an empty list: only "nothing found" is
        # an empty answer.
        return list(parse_accounting(self._expect(answer)))

    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        """Cancel as `user`, with `user`'s token: Slurm refuses another user's job."""
        for job_id in sorted(set(job_ids)):
            answer = await self._call(
                "cancel", "DELETE", self._path("slurm", f"job/{quote(job_id, safe='')}"), user
            )
            self._expect(answer)

    async def version(self) -> str:
        """Slurm's release, from a ping that reaches slurmctld with queryUser's token."""
        answer = await self._call("version", "GET", self._path("slurm", "ping"), self.query_user)
        body = self._expect(answer)
        pings = body.get("pings") or []
        if pings and not any(p.get("ping") == "UP" for p in pings if isinstance(p, dict)):
            raise SchedulerUnavailable(f"slurmrestd {answer.request}: no slurmctld is UP")
        return str(((body.get("meta") or {}).get("Slurm") or {}).get("release", ""))

    async def availability(self) -> Availability:
        """Partitions, nodes and every job: three requests with queryUser's token."""
        answers = {}
        for resource in ("partitions", "nodes", "jobs"):
            answer = await self._call(
                "availability", "GET", self._path("slurm", resource), self.query_user
            )
            answers[resource] = self._expect(answer)
        return availability(
            parse_partition_loads(answers["partitions"], answers["nodes"]),
            parse_queued_jobs(answers["jobs"]),
        )
