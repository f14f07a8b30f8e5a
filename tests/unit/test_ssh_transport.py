"""The SSH transport: command building and quoting, host-key pinning, and its behaviour against an
in-process SSH server (asyncssh's server side) that runs each command with /bin/sh -c, as sshd
runs it through a POSIX login shell. The real OpenSSH sshd is in tests/integration/test_ssh.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shlex
import signal as signal_module
import socket
import subprocess
import sys
import time

import asyncssh
import pytest

from batchnotebook_operator.errors import SchedulerUnavailable
from batchnotebook_operator.transports import ssh
from batchnotebook_operator.transports.ssh import (
    MAX_CHANNELS,
    SSHTransport,
    pinned_host_keys,
    remote_words,
)

SUDO = ["sudo", "-n", "-u", "{user}", "--"]
HOSTILE = [
    "$(touch {canary})",
    "`touch {canary}`",
    "; touch {canary}",
    "| touch {canary}",
    "&& touch {canary}",
    "a'b",
    'a"b',
    "\\",
    "\n",
    "line\nnext",
    "",
    " ",
    "*",
    "~",
    "$HOME",
    "${HOME}",
    "!",
    "-n",
    "--",
    "{user}",
    "#comment",
    "ünïcödé",
    "tab\there",
]
# Prints its arguments as JSON, so that what arrived can be compared word for word.
ECHO_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def hostile(canary) -> list[str]:
    return [word.replace("{canary}", str(canary)) for word in HOSTILE]


def shell(command: str, stdin: str = "") -> subprocess.CompletedProcess:
    """What sshd does with the command line: the login shell's -c."""
    return subprocess.run(
        ["/bin/sh", "-c", command], input=stdin, capture_output=True, text=True, check=False
    )


# --- command building ------------------------------------------------------------------------


def test_operator_commands_are_the_argv_alone():
    assert remote_words(["squeue", "--all"], user=None, run_as=SUDO, environment={}) == [
        "squeue",
        "--all",
    ]


def test_user_commands_go_through_the_prefix_then_to_the_home_then_env():
    words = remote_words(
        ["sbatch", "--parsable"], user="alice", run_as=SUDO, environment={"SLURM_CONF": "/x y"}
    )
    assert words[:5] == ["sudo", "-n", "-u", "alice", "--"]
    assert words[5:9] == ["sh", "-c", ssh.IN_HOME, "batchnotebook"]
    assert words[9:] == ["env", "SLURM_CONF=/x y", "sbatch", "--parsable"]


def test_hostile_arguments_arrive_unchanged_and_nothing_is_interpreted(tmp_path):
    canary = tmp_path / "canary"
    words = hostile(canary)
    command = shlex.join(remote_words(ECHO_ARGV + words, user=None, run_as=SUDO, environment={}))
    result = shell(command)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == words
    assert not canary.exists()


def test_hostile_user_environment_and_arguments_through_the_prefix(tmp_path):
    """A prefix that runs the command as the same user ("env RUN_AS={user}"), so the whole chain
    runs here: prefix, cd to the home, env, command."""
    canary = tmp_path / "canary"
    words = hostile(canary)
    user = f"al'ice; touch {canary}"
    environment = {"HOSTILE": f"$(touch {canary})'\"", "EMPTY": ""}
    argv = [
        sys.executable,
        "-c",
        "import json, os, sys; print(json.dumps([os.getcwd(), os.environ['RUN_AS'], "
        "os.environ['HOSTILE'], os.environ['EMPTY'], sys.argv[1:]]))",
        *words,
    ]
    command = shlex.join(
        remote_words(argv, user=user, run_as=["env", "RUN_AS={user}"], environment=environment)
    )
    result = shell(command)
    assert result.returncode == 0, result.stderr
    cwd, run_as, value, empty, arrived = json.loads(result.stdout)
    assert cwd == pwd.getpwuid(os.getuid()).pw_dir  # the user's home, not the caller's cwd
    assert run_as == user and value == environment["HOSTILE"] and empty == ""
    assert arrived == words
    assert not canary.exists()


@pytest.mark.parametrize(
    ("passwd_entry", "message"),
    [("", "has no home directory"), ("x:x:1:1::{missing}:/bin/sh", "can't cd to")],
)
def test_no_home_on_the_login_node_stops_the_command(tmp_path, passwd_entry, message):
    """Never another directory: the job's output would land where the user cannot see it."""
    stub = tmp_path / "getent"
    entry = passwd_entry.replace("{missing}", str(tmp_path / "gone"))
    stub.write_text(f"#!/bin/sh\necho '{entry}'\n")
    stub.chmod(0o755)
    prefix = ["env", f"PATH={tmp_path}:{os.environ['PATH']}"]
    result = shell(shlex.join(remote_words(["pwd"], user="x", run_as=prefix, environment={})))
    assert result.returncode != 0 and result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize("name", ["", "1X", "A-B", "A=B", "-i", "A B", "A;B"])
def test_environment_names_that_are_not_names_are_refused(name):
    with pytest.raises(ValueError, match="illegal environment variable name"):
        remote_words(["true"], user=None, run_as=SUDO, environment={name: "v"})


def test_a_nul_byte_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="null byte"):
        remote_words(["echo", "a\0b"], user=None, run_as=SUDO, environment={})


# --- host-key pinning ------------------------------------------------------------------------


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def new_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def test_pinned_keys_in_authorized_keys_and_known_hosts_formats():
    plain, with_comment, known, hashed, bracket, ca, gone = (new_key() for _ in range(7))
    text = "\n".join(
        [
            "# the login nodes",
            "",
            public(plain),
            public(with_comment) + " root@login1",
            f"login1,10.0.0.1 {public(known)}",
            f"|1|c2FsdA==|aGFzaA== {public(hashed)}",
            f"[login.example.org]:2222 {public(bracket)} comment",
            f"@cert-authority *.example.org {public(ca)}",
            f"@revoked * {public(gone)}",
        ]
    )
    trusted, authorities, revoked = pinned_host_keys(text)
    assert [public(k) for k in trusted] == [
        public(k) for k in (plain, with_comment, known, hashed, bracket)
    ]
    assert [public(k) for k in authorities] == [public(ca)]
    assert [public(k) for k in revoked] == [public(gone)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no host key to pin"),
        ("# only a comment", "no host key to pin"),
        ("login1 ssh-ed25519 not-base64", "line 1 holds no public key"),
        ("@revoked * {key}", "no host key to pin"),
        ("@trusted * {key}", "unknown marker @trusted"),
    ],
)
def test_host_key_text_without_a_usable_pin_is_refused(text, message):
    with pytest.raises(SchedulerUnavailable, match=message):
        pinned_host_keys(text.replace("{key}", public(new_key())))


# --- against an SSH server -------------------------------------------------------------------


class LoginNode:
    """An SSH server on loopback that runs each exec request with /bin/sh -c; counts
    connections, sessions at once and signals received."""

    def __init__(self, authorized: asyncssh.SSHKey) -> None:
        self.host_key = new_key()
        self.authorized = authorized
        self.port = 0
        self.listener: asyncssh.SSHAcceptor | None = None
        self.connections: list[asyncssh.SSHServerConnection] = []
        self.commands: list[str] = []
        self.signals: list[str] = []
        self.active = self.most_active = 0
        self.tasks: set[asyncio.Future] = set()

    async def start(self) -> None:
        node = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                node.connections.append(conn)

            def session_requested(self) -> asyncssh.SSHServerSession:
                return ShellSession(node)

        self.listener = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(public(self.authorized)),
        )
        self.port = self.listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """An outage: stop listening and drop every connection."""
        self.listener.close()
        await self.listener.wait_closed()
        for conn in self.connections:
            conn.abort()
        await asyncio.gather(*self.tasks)


class ShellSession(asyncssh.SSHServerSession):
    def __init__(self, node: LoginNode) -> None:
        self.node = node
        self.stdin: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan

    def exec_requested(self, command: str) -> bool:
        self.command = command
        self.node.commands.append(command)
        return True

    def data_received(self, data: str, datatype: int | None) -> None:
        self.stdin.append(data)

    def eof_received(self) -> bool:
        task = asyncio.ensure_future(self.run())
        self.node.tasks.add(task)
        task.add_done_callback(self.node.tasks.discard)
        return True

    def signal_received(self, signal: str) -> None:
        self.node.signals.append(signal)
        self.end(signal_module.SIGTERM)

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(signal_module.SIGKILL)

    def end(self, signal: int) -> None:
        """The command's whole process group, as sshd signals a session."""
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal)

    async def run(self) -> None:
        self.node.active += 1
        self.node.most_active = max(self.node.most_active, self.node.active)
        try:
            self.process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            out, err = await self.process.communicate("".join(self.stdin).encode())
        finally:
            self.node.active -= 1
        with contextlib.suppress(BrokenPipeError, asyncssh.Error):  # the client left already
            self.chan.write(out.decode())
            self.chan.write_stderr(err.decode())
            self.chan.exit(self.process.returncode % 256)


class SecretStore:
    """What the transport needs of Kube: secret_data, counted."""

    def __init__(self, key: asyncssh.SSHKey | None) -> None:
        self.key = key
        self.reads = 0

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        self.reads += 1
        assert (namespace, name) == ("default", "login-key")
        return {"ssh-privatekey": self.key.export_private_key().decode()} if self.key else {}


def transport(node: LoginNode, kube, *, host_key: str | None = None, timeout: float = 10):
    return SSHTransport(
        {
            "host": "127.0.0.1",
            "port": node.port,
            "user": "batchnotebook",
            "hostKey": host_key if host_key is not None else public(node.host_key),
            "privateKeySecret": {"name": "login-key"},
            "keepaliveSeconds": 5,
        },
        kube,
        run_as=["env", "RUN_AS={user}"],
        timeout=timeout,
        environment=None,
    )


@pytest.fixture
async def node_and_key(monkeypatch):
    monkeypatch.delenv("BATCHNOTEBOOK_NAMESPACE", raising=False)
    monkeypatch.setattr(ssh, "FIRST_BACKOFF", 0.2)
    key = new_key()
    node = LoginNode(key)
    await node.start()
    yield node, key
    await node.stop()


async def test_many_commands_share_one_connection_within_the_channel_bound(node_and_key):
    node, key = node_and_key
    kube = SecretStore(key)
    remote = transport(node, kube)
    try:
        results = await asyncio.gather(
            *(remote.run(["sh", "-c", f"sleep 0.2; echo {n}"]) for n in range(3 * MAX_CHANNELS))
        )
        assert [r.stdout for r in results] == [f"{n}\n" for n in range(3 * MAX_CHANNELS)]
        assert len(node.connections) == 1 and kube.reads == 1
        assert node.most_active == MAX_CHANNELS
    finally:
        await remote.close()


async def test_stdin_eof_output_and_exit_status(node_and_key, tmp_path):
    node, key = node_and_key
    remote = transport(node, SecretStore(key))
    try:
        script = "#!/bin/sh\n#SBATCH --job-name='x y'\necho \"$(id)\" `id` ; exit 0\n"
        result = await remote.run(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=script)
        assert (result.returncode, result.stdout, result.stderr) == (3, script, "oops\n")
        empty = await remote.run(["cat"])  # no stdin: EOF at once, nothing hangs
        assert (empty.returncode, empty.stdout) == (0, "")
        canary = tmp_path / "canary"
        words = hostile(canary)
        echoed = await remote.run([*ECHO_ARGV, *words], user="alice")
        assert json.loads(echoed.stdout) == words and not canary.exists()
        assert echoed.argv[:2] == ("env", "RUN_AS=alice")
    finally:
        await remote.close()


async def test_a_command_that_does_not_answer_is_terminated(node_and_key):
    node, key = node_and_key
    remote = transport(node, SecretStore(key), timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(SchedulerUnavailable, match="sleep did not answer within 1 s"):
            await remote.run(["sleep", "30"])
        assert time.monotonic() - started < 5
        for _ in range(50):
            if node.signals:
                break
            await asyncio.sleep(0.05)
        assert node.signals == ["TERM"]
        # The connection is still good for the next command.
        assert (await remote.run(["echo", "ok"])).stdout == "ok\n"
        assert len(node.connections) == 1
    finally:
        await remote.close()


async def test_a_wrong_host_key_is_refused_and_retried_only_after_a_backoff(node_and_key):
    node, key = node_and_key
    impostor = new_key()
    remote = transport(node, SecretStore(key), host_key=f"login1 {public(impostor)}")
    try:
        with pytest.raises(SchedulerUnavailable) as refused:
            await remote.run(["true"])
        message = str(refused.value)
        assert "host key" in message and "was refused" in message
        assert node.host_key.get_fingerprint() in message  # the key the server offered
        assert node.commands == []
        with pytest.raises(SchedulerUnavailable, match=r"was refused.*next attempt to connect in"):
            await remote.run(["true"])
        assert len(node.connections) == 1  # the second call did not even connect
    finally:
        await remote.close()


class KnownHostsStore(SecretStore):
    """The operator's key, and the site's known_hosts in a Secret of its own."""

    def __init__(self, key: asyncssh.SSHKey, known_hosts: str) -> None:
        super().__init__(key)
        self.known_hosts = known_hosts

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        if name == "site-known-hosts":
            self.reads += 1
            return {"known_hosts": self.known_hosts} if self.known_hosts else {}
        return await super().secret_data(namespace, name)


def known_hosts_transport(node: LoginNode, kube: KnownHostsStore) -> SSHTransport:
    spec = {
        "host": "127.0.0.1",
        "port": node.port,
        "knownHostsSecret": {"name": "site-known-hosts"},
        "privateKeySecret": {"name": "login-key"},
    }
    return SSHTransport(spec, kube, run_as=["env", "RUN_AS={user}"], timeout=10)


async def test_host_keys_can_come_from_a_known_hosts_secret(node_and_key):
    node, key = node_and_key
    pinned = KnownHostsStore(key, f"# site file\nlogin1,10.0.0.1 {public(node.host_key)}\n")
    remote = known_hosts_transport(node, pinned)
    try:
        assert (await remote.run(["echo", "ok"])).stdout == "ok\n"
        assert pinned.reads == 2  # the key and the known_hosts, each read for the connection
    finally:
        await remote.close()

    elsewhere = known_hosts_transport(node, KnownHostsStore(key, f"login1 {public(new_key())}"))
    try:
        with pytest.raises(SchedulerUnavailable) as refused:
            await elsewhere.run(["true"])
        message = str(refused.value)
        assert "which Secret default/site-known-hosts key 'known_hosts' does not pin" in message
    finally:
        await elsewhere.close()

    missing = known_hosts_transport(node, KnownHostsStore(key, ""))
    try:
        with pytest.raises(SchedulerUnavailable, match="site-known-hosts has no 'known_hosts'"):
            await missing.run(["true"])
    finally:
        await missing.close()


async def test_reconnects_after_an_outage_with_the_key_read_again(node_and_key):
    node, key = node_and_key
    kube = SecretStore(key)
    remote = transport(node, kube)
    try:
        assert (await remote.run(["echo", "before"])).stdout == "before\n"
        await node.stop()
        with pytest.raises(SchedulerUnavailable):
            await remote.run(["echo", "during"])
        # The key is rotated during the outage: only the new one is authorized afterwards.
        rotated = new_key()
        kube.key, node.authorized = rotated, rotated
        await node.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                result = await remote.run(["echo", "after"])
                break
            except SchedulerUnavailable:
                assert time.monotonic() < deadline, "no reconnection within 10 s"
                await asyncio.sleep(0.1)
        assert result.stdout == "after\n"
        assert kube.reads >= 2
        assert len(node.connections) == 2
    finally:
        await remote.close()


async def test_a_connection_lost_during_a_command_is_unavailable_not_an_exit_status(node_and_key):
    node, key = node_and_key
    remote = transport(node, SecretStore(key))
    try:
        running = asyncio.ensure_future(remote.run(["sleep", "30"]))
        while not node.commands:
            await asyncio.sleep(0.05)
        for conn in node.connections:
            conn.abort()
        with pytest.raises(SchedulerUnavailable, match="lost"):
            await running
    finally:
        await remote.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_nothing_listening_is_unavailable(monkeypatch):
    monkeypatch.delenv("BATCHNOTEBOOK_NAMESPACE", raising=False)
    node = LoginNode(new_key())
    node.port = free_port()
    remote = transport(node, SecretStore(node.authorized))
    with pytest.raises(SchedulerUnavailable, match=r"cannot connect to batchnotebook@127\.0\.0\.1"):
        await remote.run(["true"])
    await remote.close()


@pytest.mark.parametrize(
    ("kube", "message"),
    [
        (None, "no Kubernetes API client to read Secret default/login-key"),
        (SecretStore(None), "Secret default/login-key has no 'ssh-privatekey'"),
    ],
)
async def test_no_usable_key_is_unavailable(monkeypatch, kube, message):
    monkeypatch.delenv("BATCHNOTEBOOK_NAMESPACE", raising=False)
    node = LoginNode(new_key())
    node.port = free_port()
    with pytest.raises(SchedulerUnavailable, match=message):
        await transport(node, kube).run(["true"])


async def test_an_encrypted_key_is_unavailable_and_not_shown(monkeypatch):
    monkeypatch.delenv("BATCHNOTEBOOK_NAMESPACE", raising=False)
    key = new_key()
    # PKCS#8 (OpenSSH's own encrypted format needs bcrypt, which the operator does not need).
    encrypted = key.export_private_key("pkcs8-pem", passphrase="secret").decode()

    class Store:
        async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
            return {"ssh-privatekey": encrypted}

    node = LoginNode(key)
    node.port = free_port()
    with pytest.raises(SchedulerUnavailable, match="cannot be used") as error:
        await transport(node, Store()).run(["true"])
    assert encrypted.splitlines()[1] not in str(error.value)
