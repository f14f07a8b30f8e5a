"""Renders a BatchCluster's job-script template for one notebook.

Every `{{ expression }}` is shell-quoted on output, so no value a user chose (or an admin typed)
can break out of its place in the script; only the launcher and the admin's prologue are inserted
verbatim.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from batchnotebook_api.errors import InvalidOptions
from batchnotebook_api.options import Resources

from . import envfile

if TYPE_CHECKING:
    from .schedulers import Scheduler

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEREDOC_END = "BATCHNOTEBOOK_LAUNCHER"


# A cluster's stopBeforeWalltimeSeconds when it sets none (the CRD's default).
DEFAULT_STOP_BEFORE_WALLTIME_SECONDS = 120


def stop_after_seconds(walltime_seconds: int | None, stop_before_seconds: int) -> int | None:
    """How long after it starts the launcher lets Jupyter run, so that it is stopped cleanly
    before the scheduler kills the job at its walltime; None without a walltime or a margin. The
    margin never takes more than half of a short walltime."""
    if not walltime_seconds or stop_before_seconds <= 0:
        return None
    return walltime_seconds - min(stop_before_seconds, walltime_seconds // 2)


class Verbatim(str):
    """Text the template inserts as it is."""


def _shell_quote(value: Any) -> str:
    if isinstance(value, Verbatim):
        return value
    if value is None:
        return "''"
    return shlex.quote(str(value))


_templates = SandboxedEnvironment(
    finalize=_shell_quote,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@functools.cache  # the installed file does not change while the operator runs
def launcher_source() -> str:
    source = (resources.files(__package__) / "launcher.py").read_text()
    if any(line.strip() == HEREDOC_END for line in source.splitlines()):
        raise RuntimeError("the launcher must not contain its own heredoc terminator")
    return source


@dataclass(frozen=True)
class JobRequest:
    """Everything a job script depends on."""

    job_name: str
    comment: str
    user: str
    resources: Resources
    environment: dict[str, str]
    jupyter_command: list[str]
    python: str = "python3"
    prologue: str = ""
    output: str = "batchnotebook-%j.log"
    #: The notebook uid whose environment file (envfile.py) the job reads; None when the
    #: scheduler hands the job its environment some other way.
    environment_file: str | None = None
    #: Grid Engine's parallel environment for a job on several nodes (the cluster's setting).
    parallel_environment: str | None = None


@functools.lru_cache(maxsize=64)
def _compiled(template: str) -> Template:
    """A cluster's template compiled once, not for every job (a start burst renders hundreds)."""
    return _templates.from_string(template)


def render(template: str, request: JobRequest) -> str:
    bad = [k for k in request.environment if not ENV_NAME.match(k)]
    if bad:
        raise InvalidOptions(f"invalid environment variable name(s): {', '.join(bad)}")
    exports = "\n".join(
        f"export {key}={shlex.quote(value)}" for key, value in sorted(request.environment.items())
    )
    if request.environment_file is not None:
        exports += "\n" + envfile.script_lines(request.environment_file)
    launch = " ".join(shlex.quote(part) for part in [request.python, "-", *request.jupyter_command])
    resources_ = request.resources
    context = {
        "job_name": request.job_name,
        "comment": request.comment,
        "user": request.user,
        "nodes": resources_.nodes,
        "tasks_per_node": resources_.tasks_per_node,
        "cpus": resources_.cpus,
        "cpus_per_node": resources_.cpus_per_node,
        "parallel_environment": request.parallel_environment,
        "memory": resources_.memory,
        "memory_mb": resources_.memory_mb,
        "gpus": resources_.gpus,
        "walltime": resources_.walltime,
        "walltime_seconds": resources_.walltime_seconds,
        "partition": resources_.partition,
        "account": resources_.account,
        "qos": resources_.qos,
        "extras": resources_.extras,
        "output": request.output,
        "prologue": Verbatim(request.prologue),
        "environment": Verbatim(exports),
        "launcher": Verbatim(
            f"exec {launch} <<'{HEREDOC_END}'\n{launcher_source().rstrip()}\n{HEREDOC_END}"
        ),
    }
    try:
        return _compiled(template).render(**context)
    except TemplateError as error:
        raise InvalidOptions(f"the cluster's job template does not render: {error}") from error


def callback_problem(cluster: dict) -> str:
    """Why jobs must not report to the cluster's callbackURL ("" if they may): the report carries
    the notebook's token, so plain http is refused unless the site says it accepts it."""
    url = str(cluster.get("callbackURL", ""))
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "https" or (scheme == "http" and cluster.get("allowInsecureCallback", False)):
        return ""
    if scheme == "http":
        return (
            f"callbackURL {url} is plain http: jobs would send the notebook's token unencrypted. "
            "Use https, or set spec.allowInsecureCallback: true if the site accepts that"
        )
    return f"callbackURL {url!r} is not an https URL"


def report_url(cluster: dict, namespace: str, name: str) -> str:
    """Where a notebook's job reports its port. Raises InvalidOptions for a callbackURL jobs must
    not use."""
    problem = callback_problem(cluster)
    if problem:
        raise InvalidOptions(problem)
    return f"{cluster['callbackURL'].rstrip('/')}/v1/report/{namespace}/{name}"


def job_script(
    cluster: dict,
    scheduler: Scheduler,
    *,
    namespace: str,
    name: str,
    uid: str,
    unix_user: str,
    resources: Resources,
    environment_file: bool = True,
) -> str:
    """The script the operator submits for a notebook (and `batchnotebook render` shows): the
    cluster's template, or its scheduler's default, with where to report and when to stop. No
    value of the server's environment (its tokens) is in it: with `environment_file` the script
    names the private file the client stages (envfile.py), without it the client gives the
    scheduler the environment beside the script."""
    environment = {"BATCHNOTEBOOK_REPORT_URL": report_url(cluster, namespace, name)}
    stop_after = stop_after_seconds(
        resources.walltime_seconds,
        cluster.get("stopBeforeWalltimeSeconds", DEFAULT_STOP_BEFORE_WALLTIME_SECONDS),
    )
    if stop_after is not None:
        environment["BATCHNOTEBOOK_STOP_AFTER"] = str(stop_after)
    return render(
        cluster.get("jobTemplate") or scheduler.default_template(),
        JobRequest(
            job_name=scheduler.job_name(uid),
            comment=f"batchnotebook:{namespace}/{name}",
            user=unix_user,
            resources=resources,
            environment=environment,
            jupyter_command=list(cluster.get("jupyterCommand", ["jupyterhub-singleuser"])),
            python=cluster.get("python", "python3"),
            prologue=cluster.get("prologue", ""),
            output=cluster.get("jobOutput", "batchnotebook-%j.log"),
            environment_file=uid if environment_file else None,
            parallel_environment=cluster.get("parallelEnvironment"),
        ),
    )
