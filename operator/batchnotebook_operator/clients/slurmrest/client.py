"""Slurm through slurmrestd (auth/jwt): every call carries a short-lived JWT for the user it acts
for; the one batched query per poll acts for `queryUser`. The OpenAPI version is the newest both
sides speak (versions.py), learnt from the server's own spec unless the BatchCluster pins one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
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
from ...model import Availability, JobState, JobStatus, availability
from ...schedulers.slurm import STATES, Slurm
from ...schedulers.slurm_json import (
    cancel_refusals,
    parse_accounting,
    parse_job_states,
    parse_jobs,
    parse_partition_loads,
    parse_queued_jobs,
)
from ...transports import operator_namespace
from ..base import SchedulerClient, notebook_turns
from .answer import Answer
from .directives import job_properties, script_directives
from .token import TokenSigner
from .versions import ApiVersion, choose, offered

log = logging.getLogger(__name__)

#: What `sudo -u user sbatch` gives a job on Debian (sudo's secure_path): the same PATH here.
JOB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How far back accounting is searched for a job by name, as the command-line path does.
ACCOUNTING_WINDOW = "now-7days"
#: How old the details of a pending job (its reason, its expected start) may grow while the
#: light state query says nothing changed.
DETAILS_MAX_AGE_SECONDS = 60.0


def listing_needed(
    states: dict[str, str], listed: dict[str, JobStatus], listed_at: float, now: float
) -> bool:
    """Whether the state query's answer (`states`: job id → state) needs the full job listing:
    a job it names that the last listing did not, a state that changed, or a pending job whose
    reason and expected start are older than DETAILS_MAX_AGE_SECONDS."""
    if any(job_id not in listed or listed[job_id].raw_state != s for job_id, s in states.items()):
        return True
    pending = any(listed[job_id].state is JobState.PENDING for job_id in states)
    return pending and now - listed_at > DETAILS_MAX_AGE_SECONDS


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
        #: The version the BatchCluster pins; "": the newest both sides speak.
        self.pinned = rest.get("apiVersion", "")
        self._api: ApiVersion | None = None
        #: The last full job listing of our jobs, by id, and when it was read (monotonic).
        self._listed: dict[str, JobStatus] = {}
        self._listed_at = float("-inf")
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
        query: dict[str, str | list[str]] | None = None,
        body: dict | None = None,
    ) -> Answer:
        """One request as `user`. Raises SchedulerUnavailable if slurmrestd does not answer."""
        if self.misconfigured:
            raise SchedulerUnavailable(self.misconfigured)
        # slurmrestd 22.05 refuses a raw comma in a query ("Unable to parse query."): every
        # value is percent-encoded here and the URL is sent as it is.
        # A list is the key repeated: v0.0.40+ refuse an id list with an encoded comma.
        encoded = "&".join(
            f"{key}={quote(value, safe='')}"
            for key, values in (query or {}).items()
            for value in (values if isinstance(values, list) else [values])
        )
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
        if result.token_suspect:
            self._signer = None  # read the key again before the next request
        return result

    @property
    def api_version(self) -> str:
        """The OpenAPI version in use ("" until the server was asked), and how it was chosen."""
        if self._api is None:
            return ""
        return f"{self._api.name} ({'pinned' if self.pinned else 'newest both speak'})"

    async def api(self) -> ApiVersion:
        """The version to speak: learnt once from `GET /openapi/v3`, again after a 404 (an
        upgraded slurmrestd may have dropped it)."""
        if self._api is None:
            answer = await self._call("openapi", "GET", "/openapi/v3", self.query_user)
            spec = self._expect(answer)
            self._api = choose(offered(spec), self.pinned)
            log.info("cluster %s: slurmrestd OpenAPI %s", self.name, self.api_version)
        return self._api

    async def _versioned(
        self,
        command: str,
        method: str,
        plugin: str,
        rest: str,
        user: str,
        **request: Any,
    ) -> Answer:
        """A request on the negotiated version's path (slurmdb's plugin has the same one)."""
        api = await self.api()
        answer = await self._call(command, method, f"/{plugin}/{api.name}/{rest}", user, **request)
        if answer.status == 404 and not answer.body and plugin == "slurm":
            # No such path (a job slurmctld does not know is a 404 with Slurm's JSON, and a
            # slurmrestd without slurmdbd has no /slurmdb/): ask again next time, the server's
            # versions changed.
            self._api = None
        return answer

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
        typed = self._api is not None and self._api.typed
        properties = job_properties(script_directives(script), typed=typed)
        if not self.home_directory:
            raise InvalidOptions(
                "the cluster's slurmrest connection has no homeDirectory: slurmrestd needs the "
                "directory a job starts in and cannot look up a user's home"
            )
        home = self.home_directory.replace("{user}", user)
        properties.setdefault("current_working_directory", home)
        variables = {
            "PATH": JOB_PATH,
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            **(environment or {}),
        }
        # v0.0.40+: KEY=VALUE strings; v0.0.38: an object.
        properties["environment"] = (
            [f"{key}={value}" for key, value in variables.items()] if typed else variables
        )
        return properties

    def submit_body(self, script: str, user: str, environment: dict[str, str] | None) -> dict:
        """The submit request: the script beside `job` (v0.0.38) or inside it (v0.0.40+)."""
        job = self.job_for(script, user, environment)
        if self._api is not None and self._api.typed:
            return {"job": job | {"script": script}}
        return {"job": job, "script": script}

    async def submit(
        self, script: str, user: str, *, environment: dict[str, str] | None = None, uid: str = ""
    ) -> str:
        """Submit as `user`, with `user`'s token: the job runs as that user."""
        accounts.check(self.spec, user)  # the query user's token signs no job
        await self.api()
        body = self.submit_body(script, user, environment)
        answer = await self._versioned("submit", "POST", "slurm", "job/submit", user, body=body)
        job_id = answer.body.get("job_id")
        if answer.status == 200 and isinstance(job_id, int):
            return str(job_id)  # errors beside a job id are notes, e.g. "held"
        if answer.no_answer or answer.status == 200:
            raise SchedulerUnavailable(answer.message())
        raise SubmissionRefused(answer.message())

    async def query(self, tags: Iterable[str], job_ids: Iterable[str] = ()) -> dict[str, JobStatus]:
        """State of every job named by `tags`, by job id, read with queryUser's token. Where the
        server has `jobs/state` (v0.0.40+), that light query for `job_ids` comes first, and the
        listing of all jobs (slurmrestd cannot filter by name) only when it shows a change."""
        wanted, ids = set(tags), sorted(set(job_ids))
        if not wanted:
            return {}
        api = await self.api()
        if api.jobs_state and ids and self._listed:
            states = await self._states(ids)
            if states is not None and not listing_needed(
                states, self._listed, self._listed_at, time.monotonic()
            ):
                return {job_id: self._listed[job_id] for job_id in states}
        answer = await self._versioned("query", "GET", "slurm", "jobs", self.query_user)
        body = self._expect(answer)
        if not isinstance(body.get("jobs"), list):
            raise SchedulerUnavailable(f"slurmrestd {answer.request}: no job list in the answer")
        self._listed = {
            job.job_id: self.scheduler.marked(job) for job in parse_jobs(body) if job.name in wanted
        }
        self._listed_at = time.monotonic()
        return dict(self._listed)

    async def _states(self, job_ids: list[str]) -> dict[str, str] | None:
        """`GET jobs/state` for `job_ids`: their states by id, those the queue still has; None
        when Slurm answered with an error (the listing decides then)."""
        answer = await self._versioned(
            "states",
            "GET",
            "slurm",
            "jobs/state",
            self.query_user,
            query={"job_id": job_ids},
        )
        if answer.no_answer:
            raise SchedulerUnavailable(answer.message())
        if not answer.ok or not isinstance(answer.body.get("jobs"), list):
            return None  # Slurm's refusal, or an answer of another shape: never "all gone"
        return parse_job_states(answer.body)

    async def _accounting(self, job_ids: list[str], tags: list[str]) -> list[JobStatus]:
        """One slurmdbd query."""
        api = await self.api()
        query: dict[str, str | list[str]] = {"skip_steps": "true"}
        if job_ids:
            # slurmdbd's job-id list, as sacct --jobs: one comma-separated value for v0.0.38,
            # the key repeated from v0.0.40 on (which refuse "7%2C8" as not RFC 7320).
            query["step"] = job_ids if api.typed else ",".join(job_ids)
        if tags:
            query |= {"job_name": ",".join(tags), "start_time": ACCOUNTING_WINDOW}
        answer = await self._versioned(
            "accounting", "GET", "slurmdb", "jobs", self.query_user, query=query
        )
        # A refused token comes back as HTTP 200 with an empty list: only "nothing found" is
        # an empty answer.
        return list(parse_accounting(self._expect(answer)))

    async def cancel(self, job_ids: Iterable[str], user: str) -> None:
        """Cancel as `user`, with `user`'s token: Slurm refuses another user's job. v0.0.42+
        say a refusal only in the job's `status`, v0.0.40 and v0.0.41 not at all (HTTP 200, no
        error): there the queue is asked whether the jobs still wait or run."""
        ids = sorted(set(job_ids))
        for job_id in ids:
            answer = await self._versioned(
                "cancel", "DELETE", "slurm", f"job/{quote(job_id, safe='')}", user
            )
            refusals = cancel_refusals(self._expect(answer))
            if refusals:
                raise SchedulerUnavailable(f"slurmrestd {answer.request}: {'; '.join(refusals)}")
        if ids and (await self.api()).jobs_state:
            states = await self._states(ids)
            alive = sorted(
                job_id
                for job_id, state in (states or {}).items()
                if STATES.get(state) in (JobState.PENDING, JobState.RUNNING)
            )
            if states is None or alive:
                raise SchedulerUnavailable(
                    f"slurmrestd took the cancel of job {', '.join(alive or ids)} as {user}, "
                    "but the queue does not show it ending (refused, or not asked)"
                )

    async def version(self) -> str:
        """Slurm's release, from a ping that reaches slurmctld with queryUser's token."""
        answer = await self._versioned("version", "GET", "slurm", "ping", self.query_user)
        body = self._expect(answer)
        pings = [p for p in body.get("pings") or [] if isinstance(p, dict)]
        # v0.0.38 says ping: UP; v0.0.40+ pinged: UP and responding: true.
        if pings and not any(p.get("ping", p.get("pinged")) == "UP" for p in pings):
            raise SchedulerUnavailable(f"slurmrestd {answer.request}: no slurmctld is UP")
        meta = body.get("meta") or {}
        return str((meta.get("Slurm") or meta.get("slurm") or {}).get("release", ""))

    async def availability(self) -> Availability:
        """Partitions, nodes and every job: three requests with queryUser's token."""
        answers = {}
        for resource in ("partitions", "nodes", "jobs"):
            answer = await self._versioned(
                "availability", "GET", "slurm", resource, self.query_user
            )
            answers[resource] = self._expect(answer)
        return availability(
            parse_partition_loads(answers["partitions"], answers["nodes"]),
            parse_queued_jobs(answers["jobs"]),
        )
