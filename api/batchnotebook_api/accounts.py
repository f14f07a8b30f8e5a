"""Which Unix accounts a notebook may run as: a BatchCluster's userMapping policy.

Pure: the spawner (before it creates anything), the operator (before it submits) and the
slurmrestd token signer all ask the same question. Only the uid is left to the operator, which
can look it up on the cluster (see CommandLineClient.check_account).
"""

from __future__ import annotations

import re

from .errors import InvalidOptions

# The schedulers' admin and daemon accounts and the usual system accounts: a job as one of them
# controls the scheduler or the machine. The CRD's default for userMapping.deny is this list.
DEFAULT_DENY = (
    "root",
    "toor",
    "bin",
    "daemon",
    "sys",
    "adm",
    "sync",
    "shutdown",
    "halt",
    "operator",
    "nobody",
    "sshd",
    "munge",
    "slurm",
    "slurmrest",
    "slurmrestd",
    "slurmdbd",
    "sge",
    "sgeadmin",
    "pbs",
    "pbsadmin",
    "pbsdata",
    "torque",
    "maui",
    "moab",
    "lsf",
    "lsfadmin",
    "condor",
    "batchnotebook",
)
DEFAULT_ALLOW_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
DEFAULT_MIN_UID = 1000
# What slurmrestd and an SSH login use when the spec leaves them out (the CRD's defaults).
DEFAULT_QUERY_USER = "batchnotebook"  # an unprivileged account, never SlurmUser
DEFAULT_SSH_USER = "batchnotebook"


class AccountRefused(InvalidOptions):
    """The Unix account a notebook would run as is not one users may run as."""


def service_accounts(cluster_spec: dict) -> set[str]:
    """The accounts the operator itself acts as on this cluster: never a notebook's."""
    connection = cluster_spec.get("connection") or {}
    kind = connection.get("type", "local")
    if kind == "ssh":
        return {(connection.get("ssh") or {}).get("user", DEFAULT_SSH_USER)}
    if kind == "slurmrest":
        return {(connection.get("slurmrest") or {}).get("queryUser", DEFAULT_QUERY_USER)}
    return set()


def min_uid(cluster_spec: dict) -> int:
    """The lowest uid a notebook may run as; never 0, whatever the spec says."""
    return max(1, int((cluster_spec.get("userMapping") or {}).get("minUid", DEFAULT_MIN_UID)))


def refusal(cluster_spec: dict, unix_user: str) -> str | None:
    """Why `unix_user` may not run notebooks on this cluster, or None if the name is allowed."""
    mapping = cluster_spec.get("userMapping") or {}
    if unix_user == "root":  # whatever the deny list says
        return "jobs never run as root"
    if unix_user in service_accounts(cluster_spec):
        return "it is the operator's own account on this cluster"
    if unix_user in mapping.get("deny", DEFAULT_DENY):
        return "it is a system or scheduler account, which notebooks may not use"
    pattern = mapping.get("allowPattern", DEFAULT_ALLOW_PATTERN)
    try:
        allowed = re.fullmatch(pattern, unix_user)
    except re.error:
        return f"the cluster's userMapping.allowPattern {pattern!r} is not a valid expression"
    if not allowed:
        return f"it is not a user name this cluster allows (it must match {pattern})"
    return None


def _refuse(unix_user: str, reason: str | None) -> None:
    if reason is not None:
        raise AccountRefused(f"the Unix account {unix_user!r} is refused: {reason}")


def check(cluster_spec: dict, unix_user: str) -> str:
    """`unix_user`, or AccountRefused with the reason."""
    _refuse(unix_user, refusal(cluster_spec, unix_user))
    return unix_user


def check_uid(cluster_spec: dict, unix_user: str, uid: int | None) -> None:
    """AccountRefused unless the account's uid on the cluster (None: no such account) may run
    notebooks."""
    _refuse(unix_user, uid_refusal(cluster_spec, uid))


def uid_refusal(cluster_spec: dict, uid: int | None) -> str | None:
    """Why the account with this uid (None: the cluster has no such user) is refused, or None."""
    if uid is None:
        return "there is no such account on the cluster"
    lowest = min_uid(cluster_spec)
    if uid < lowest:
        return f"its uid {uid} is below this cluster's minUid {lowest} (a system account)"
    return None
