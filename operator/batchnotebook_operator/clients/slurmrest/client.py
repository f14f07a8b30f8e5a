"""Slurm through slurmrestd (auth/jwt): every call carries a short-lived JWT for the user it acts
for; the one batched query per poll acts for `queryUser`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from kubernetes_asyncio.client.exceptions import ApiException

from batchnotebook_api import accounts
from batchnotebook_api.errors import InvalidOptions

from ... import metrics
from ...errors import SchedulerUnavailable, SubmissionRefused
from ...kube import Kube
from ...model import Availability, JobStatus, availability
from ...schedulers.slurm import Slurm
from ...schedulers.slurm_json import (
    parse_accounting,
    parse_jobs,
    parse_partition_loads,
    parse_queued_jobs,
    text_of,
)
from ...transports import operator_namespace
from ..base import SchedulerClient, notebook_turns
from .directives import job_properties, script_directives
from .token import TokenSigner

log = logging.getLogger(__name__)

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
        details = []
        for error in self.problems:
            description, error_text = text_of(error.get("description")), text_of(error.get("error"))
            if description and error_text and not description.endswith(error_text):
                details.append(f"{description}: {error_text}")
            else:
                details.append(description or error_text)
        words = "; ".join(w for w in details if w) or self.text[:300] or "no details"
        hint = ""
        if self.status == 401 or any(self.number(e) in TOKEN_SUSPECT_NUMBERS for e in self.errors):
            hint = " (slurmrestd answers this way to a token signed with the wrong key, too)"
        return f"slurmrestd {self.request}: HTTP {self.status}: {words}{hint}"


class SlurmRestClient(SchedulerClient):
    """SchedulerClient over slurmrestd's REST API."""

    def __init__(self, name: str, spec: dict, kube: Kube | None = None) -> None:
        self.name = name
        self.spec = spec
        connection = spec.get("connection", {})
        rest = connection.get("slurmrest", {})
        #: The Slurm dialect, for job names and the default job template.
        self.scheduler = Slurm(spec.get("commands"))
        # The CRD refuses this spec, but only when it is written: a BatchCluster stored before
        # the CRD had the rule is still served, and must fail here rather than act as Slurm.
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
        with metrics.scheduler_command(self.name, command) as outcome:
            try:
                async with self.session().request(
                    method, url, headers=headers, json=body
                ) as answer:
                    result = Answer.read(request, answer.status, await answer.read())
            except (aiohttp.ClientError, TimeoutError) as error:
                raise SchedulerUnavailable(
                    f"slurmrestd at {self.base_url} did not answer {request}: "
                    f"{error or type(error).__name__}"
                ) from error
            outcome.ok = result.ok
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

    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
        """One slurmdbd query."""
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
