"""A login node over SSH: every scheduler command of a cluster on ONE multiplexed connection.

The connection is opened on first use, its host key pinned from the BatchCluster (never trusted
on first use), authenticated with the operator's key read from a Secret each time it connects
(a rotated key is picked up by the next connection), kept alive, and re-opened after a drop with
capped exponential backoff. Every failure to reach the login node is SchedulerUnavailable: it
never makes a job look gone.

sshd runs each command through the service account's login shell (`$SHELL -c COMMAND`), which must
be a POSIX shell: every word of the command line is quoted with shlex, so nothing is interpreted
there or by the run-as prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time
from typing import TYPE_CHECKING

import aiohttp
import asyncssh
from kubernetes_asyncio.client.exceptions import ApiException

from ..errors import SchedulerUnavailable
from .base import CommandResult, operator_namespace

if TYPE_CHECKING:
    from ..kube import Kube

log = logging.getLogger(__name__)

#: Channels open at once on the shared connection; OpenSSH's MaxSessions defaults to 10.
MAX_CHANNELS = 8
#: Seconds before the first reconnection attempt after a failed one; doubled up to the cap.
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0
#: Missed keepalives before the connection counts as dropped.
KEEPALIVE_COUNT_MAX = 3
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Runs as the user (after the run-as prefix), before the command: go to the user's home on the
# login node, as the local transport does, so that the job's relative output path lands there.
# The home comes from the passwd database for the effective uid, not from $HOME (what a prefix
# does to the environment varies) and not from a `cd ~user` before the prefix (the service
# account may not enter the user's home, and the user name is never spliced into shell code).
# "$@" is the command's own words, passed as arguments, never re-parsed.
IN_HOME = (
    'home=$(getent passwd "$(id -u)" | cut -d: -f6); '
    'cd "${home:?has no home directory in the passwd database}" && exec "$@"'
)


def remote_words(
    argv: list[str], *, user: str | None, run_as: list[str], environment: dict[str, str]
) -> list[str]:
    """What the login node runs: [run-as prefix, cd to the home] [env K=V ...] argv. Sent to
    sshd as shlex.join of these words, so each arrives as one argument, uninterpreted."""
    for word in argv:
        if "\0" in word:  # as for a local exec: a NUL cannot be part of an argument
            raise ValueError(f"embedded null byte in argument {word!r}")
    for name in environment:
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise ValueError(f"illegal environment variable name {name!r}")
    words: list[str] = []
    if user is not None:
        words += [part.replace("{user}", user) for part in run_as]
        words += ["sh", "-c", IN_HOME, "batchnotebook"]
    if environment:
        # After the prefix: sudo resets the environment it is given.
        words += ["env", *(f"{name}={value}" for name, value in environment.items())]
    return words + list(argv)


def pinned_host_keys(
    text: str, source: str = "connection.ssh.hostKey"
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """(host keys, CA keys, revoked keys) from `text` (called `source` in errors), in known_hosts
    format (host patterns are ignored: the keys are pinned for this connection whatever its host
    is called; `@cert-authority` and `@revoked` markers are honoured) or authorized_keys format."""
    trusted: list[asyncssh.SSHKey] = []
    authorities: list[asyncssh.SSHKey] = []
    revoked: list[asyncssh.SSHKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        marker = words[0] if words[0].startswith("@") else ""
        key = None
        for i in range(len(words) - 1):  # the key is the first "<algorithm> <base64>" pair
            try:
                key = asyncssh.import_public_key(f"{words[i]} {words[i + 1]}")
                break
            except asyncssh.KeyImportError:
                continue
        if key is None:
            raise SchedulerUnavailable(f"{source} line {number} holds no public key")
        if marker == "@cert-authority":
            authorities.append(key)
        elif marker == "@revoked":
            revoked.append(key)
        elif marker:
            raise SchedulerUnavailable(f"{source} line {number}: unknown marker {marker}")
        else:
            trusted.append(key)
    if not trusted and not authorities:
        raise SchedulerUnavailable(f"{source} holds no host key to pin")
    return trusted, authorities, revoked


class _PinnedHostClient(asyncssh.SSHClient):
    """Remembers the host key the server offered when it was not one of the pinned keys (asyncssh
    asks here only then), so that the refusal can name it."""

    def __init__(self) -> None:
        self.refused_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.refused_key = key
        return False


class SSHTransport:
    """Runs commands on a login node over one shared SSH connection."""

    def __init__(
        self,
        ssh_spec: dict,
        kube: Kube | None,
        *,
        run_as: list[str],
        timeout: float,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.host = ssh_spec["host"]
        self.port = int(ssh_spec.get("port", 22))
        self.username = ssh_spec.get("user", "batchnotebook")
        # Pinned host keys: inline, or from a Secret the site manages (e.g. a known_hosts file).
        self.host_key = ssh_spec.get("hostKey")
        self.known_hosts_secret = ssh_spec.get("knownHostsSecret")
        self.key_secret = ssh_spec["privateKeySecret"]
        self.keepalive = float(ssh_spec.get("keepaliveSeconds", 30))
        self.kube = kube
        self.run_as = list(run_as)
        self.timeout = timeout
        self.environment = dict(environment or {})
        self.where = f"{self.username}@{self.host}:{self.port}"
        self._connection: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()
        self.channels = MAX_CHANNELS
        self._channels = asyncio.Semaphore(MAX_CHANNELS)
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._closed = False

    def words_for(self, argv: list[str], user: str | None) -> list[str]:
        return remote_words(argv, user=user, run_as=self.run_as, environment=self.environment)

    async def run(
        self, argv: list[str], *, user: str | None = None, stdin: str | None = None
    ) -> CommandResult:
        words = self.words_for(argv, user)
        connection = await self._connected()
        try:
            # The deadline covers waiting for a free channel too: a saturated connection is as
            # silent as a hung scheduler.
            async with asyncio.timeout(self.timeout), self._channels:
                returncode, stdout, stderr = await self._execute(
                    connection, shlex.join(words), stdin
                )
        except TimeoutError:
            raise SchedulerUnavailable(
                f"{argv[0]} did not answer within {self.timeout:g} s on {self.where}"
            ) from None
        return CommandResult(tuple(words), returncode, stdout, stderr)

    async def close(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            await connection.wait_closed()

    async def _execute(
        self, connection: asyncssh.SSHClientConnection, command: str, stdin: str | None
    ) -> tuple[int, str, str]:
        try:
            process = await connection.create_process(command, encoding="utf-8", errors="replace")
        except (asyncssh.Error, OSError) as error:
            raise SchedulerUnavailable(f"cannot open a channel to {self.where}: {error}") from None
        finished = False
        try:
            if stdin:
                process.stdin.write(stdin)
            process.stdin.write_eof()
            stdout, stderr = await process.communicate()
            finished = True
        except (asyncssh.Error, OSError) as error:
            raise SchedulerUnavailable(f"lost {self.where} during a command: {error}") from None
        finally:
            if not finished:  # timed out or cancelled: the remote command must not linger
                self._kill(process)
        if process.returncode is None:  # the channel closed without an exit status
            raise SchedulerUnavailable(f"lost {self.where} before the command exited")
        return process.returncode, str(stdout), str(stderr)

    def _kill(self, process: asyncssh.SSHClientProcess) -> None:
        """TERM, not KILL: sshd signals the session's process group, where the user's command
        runs under sudo; sudo forwards TERM to it, but KILL would end sudo alone and orphan the
        command (the service account may not signal the user's processes itself)."""
        with contextlib.suppress(asyncssh.Error, OSError):
            process.send_signal("TERM")
        process.close()

    async def _connected(self) -> asyncssh.SSHClientConnection:
        """The shared connection, opened if there is none (at most one attempt at a time, none
        before the backoff after a failed attempt has passed)."""
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return connection
        async with self._connecting:
            connection = self._connection
            if connection is not None and not connection.is_closed():
                return connection
            if self._closed:
                raise SchedulerUnavailable(f"the connection to {self.where} is closed")
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise SchedulerUnavailable(
                    f"{self._last_error} (next attempt to connect in {wait:.0f} s)"
                )
            try:
                self._connection = await self._open()
            except SchedulerUnavailable as error:
                self._failures += 1
                backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self._failures - 1))
                self._retry_at = time.monotonic() + backoff
                self._last_error = str(error)
                log.warning("%s (retrying in %g s)", error, backoff)
                raise
            if self._closed:  # closed (e.g. the cluster's spec changed) while connecting
                self._connection.close()
                raise SchedulerUnavailable(f"the connection to {self.where} is closed")
            if self._failures:
                log.info("reconnected to %s after %d failed attempts", self.where, self._failures)
            else:
                log.info("connected to %s", self.where)
            self._failures, self._retry_at, self._last_error = 0, 0.0, ""
            return self._connection

    async def _open(self) -> asyncssh.SSHClientConnection:
        key = await self._private_key()
        if self.host_key:
            source, host_keys = "connection.ssh.hostKey", self.host_key
        else:
            secret = self.known_hosts_secret
            if secret is None:  # the CRD requires exactly one of the two
                raise SchedulerUnavailable(f"{self.where}: neither hostKey nor knownHostsSecret")
            where = self._secret_name(secret)
            field = secret.get("key", "known_hosts")
            source = f"Secret {where} key {field!r}"
            host_keys = await self._secret_field(secret, field)
        known_hosts = pinned_host_keys(host_keys, source)
        client = _PinnedHostClient()
        try:
            return await asyncssh.connect(
                self.host,
                self.port,
                client_factory=lambda: client,
                username=self.username,
                client_keys=[key],
                known_hosts=known_hosts,
                preferred_auth="publickey",
                agent_path=None,  # only the key from the Secret
                config=None,  # no ~/.ssh/config of whoever runs the operator
                connect_timeout=self.timeout,
                keepalive_interval=self.keepalive,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
            )
        except asyncssh.HostKeyNotVerifiable as error:
            offered = (
                f"it offered {client.refused_key.get_algorithm()} "
                f"{client.refused_key.get_fingerprint()}, which {source} does not pin"
                if client.refused_key is not None
                else str(error)
            )
            raise SchedulerUnavailable(
                f"the SSH host key of {self.host}:{self.port} was refused: {offered}"
            ) from None
        except asyncssh.PermissionDenied:
            raise SchedulerUnavailable(
                f"{self.where} refused the operator's key from Secret "
                f"{self._secret_name(self.key_secret)}"
            ) from None
        except TimeoutError:
            raise SchedulerUnavailable(
                f"cannot connect to {self.where}: no answer within {self.timeout:g} s"
            ) from None
        except (asyncssh.Error, OSError) as error:
            raise SchedulerUnavailable(f"cannot connect to {self.where}: {error}") from None

    @staticmethod
    def _secret_name(ref: dict) -> str:
        return f"{ref.get('namespace') or operator_namespace()}/{ref['name']}"

    async def _secret_field(self, ref: dict, field: str) -> str:
        """One field of a Secret, read now (never cached: a rotated key is used by the next
        connection)."""
        where = self._secret_name(ref)
        if self.kube is None:
            raise SchedulerUnavailable(f"no Kubernetes API client to read Secret {where}")
        namespace, name = where.split("/", 1)
        try:
            data = await self.kube.secret_data(namespace, name)
        except ApiException as error:
            raise SchedulerUnavailable(
                f"cannot read Secret {where}: {error.status} {error.reason}"
            ) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SchedulerUnavailable(f"cannot read Secret {where}: {error}") from None
        if not data.get(field):
            raise SchedulerUnavailable(f"Secret {where} has no {field!r}")
        return data[field]

    async def _private_key(self) -> asyncssh.SSHKey:
        """The operator's private key, from its Secret."""
        field = self.key_secret.get("key", "ssh-privatekey")
        text = await self._secret_field(self.key_secret, field)
        where = self._secret_name(self.key_secret)
        try:
            return asyncssh.import_private_key(text)
        except (asyncssh.KeyImportError, ValueError) as error:
            # The library's message names the problem (e.g. a passphrase), never the key.
            raise SchedulerUnavailable(
                f"the private key {field!r} in Secret {where} cannot be used: {error}"
            ) from None
