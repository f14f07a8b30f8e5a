"""Nobody runs as root or as a service account (issue 11): the userMapping policy, the uid
looked up on the cluster before a submission, and no slurmrestd token for a denied name."""

from __future__ import annotations

import logging
from pathlib import Path

import kopf
import pytest
import yaml
from kopf_calls import submit

from batchnotebook_api import accounts
from batchnotebook_api.accounts import AccountRefused
from batchnotebook_api.options import notebook_resources, unix_user_of
from batchnotebook_operator.clients.commandline import CommandLineClient
from batchnotebook_operator.clients.slurmrest.client import SlurmRestClient
from batchnotebook_operator.clients.slurmrest.token import TokenSigner
from batchnotebook_operator.handlers import notebooks
from batchnotebook_operator.registry import registry
from batchnotebook_operator.transports import CommandResult

REPO = Path(__file__).resolve().parents[2]
SMALL = {"name": "small", "defaults": {"cpus": 1}}
LOCAL = {"scheduler": "slurm", "callbackURL": "https://hub.example.org", "profiles": [SMALL]}
SSH = {
    **LOCAL,
    "connection": {"type": "ssh", "ssh": {"host": "login", "user": "hpcsvc"}},
}
REST = {
    **LOCAL,
    "connection": {"type": "slurmrest", "slurmrest": {"url": "http://rest", "queryUser": "slurm"}},
}


# --- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["root", "slurm", "sgeadmin", "pbsadmin", "lsfadmin", "condor"])
def test_system_and_scheduler_accounts_are_denied_by_default(name):
    assert accounts.refusal(LOCAL, name)
    with pytest.raises(AccountRefused):
        unix_user_of(LOCAL, name)


def test_root_is_refused_even_when_the_admin_empties_the_lists():
    lax = {**LOCAL, "userMapping": {"deny": [], "allowPattern": ".*", "minUid": 0}}
    assert accounts.refusal(lax, "root") == "jobs never run as root"
    assert accounts.refusal(lax, "operator") is None  # the admin's choice
    assert accounts.min_uid(lax) == 1  # uid 0 never passes the uid check


def test_the_operators_own_accounts_are_refused():
    assert "operator's own account" in accounts.refusal(SSH, "hpcsvc")
    assert accounts.refusal(SSH, "batchnotebook")  # the default ssh user is in the deny list
    assert "operator's own account" in accounts.refusal(
        {**REST, "userMapping": {"deny": []}}, "slurm"
    )


def test_a_mapped_name_must_match_the_pattern():
    assert accounts.refusal(LOCAL, "alice") is None
    assert "must match" in accounts.refusal(LOCAL, "Alice@example.org")
    assert "must match" in accounts.refusal(LOCAL, "alice\n")
    mapped = {**LOCAL, "userMapping": {"template": "hpc-{username}"}}
    assert unix_user_of(mapped, "alice") == "hpc-alice"
    broken = {**LOCAL, "userMapping": {"allowPattern": "("}}
    assert "not a valid expression" in accounts.refusal(broken, "alice")


def test_the_operator_refuses_a_notebook_spec_of_the_root_hub_user():
    spec = {"hubUser": "root", "unixUser": "root", "profile": "small"}
    with pytest.raises(AccountRefused, match="never run as root"):
        notebook_resources("c", LOCAL, spec)


def test_the_crd_defaults_are_the_policys():
    crd = yaml.safe_load((REPO / "crds/batchnotebook.dev_batchclusters.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    mapping = schema["properties"]["spec"]["properties"]["userMapping"]["properties"]
    assert tuple(mapping["deny"]["default"]) == accounts.DEFAULT_DENY
    assert mapping["allowPattern"]["default"] == accounts.DEFAULT_ALLOW_PATTERN
    assert mapping["minUid"]["default"] == accounts.DEFAULT_MIN_UID
    assert all(field.get("description") for field in mapping.values())


# --- the uid, looked up on the cluster -------------------------------------------------------


class IdTransport:
    """Answers `id -u` from a table of accounts; records every command."""

    def __init__(self, uids: dict[str, int]) -> None:
        self.uids = uids
        self.commands: list[tuple[list[str], str | None]] = []

    async def run(self, argv, *, user=None, stdin=None) -> CommandResult:
        self.commands.append((argv, user))
        assert argv[:3] == ["id", "-u", "--"] and user is None  # as the service account
        if argv[3] in self.uids:
            return CommandResult(tuple(argv), 0, f"{self.uids[argv[3]]}\n", "")
        return CommandResult(tuple(argv), 1, "", f"id: '{argv[3]}': no such user\n")

    async def close(self) -> None:
        pass


def client_with(transport, spec=LOCAL) -> CommandLineClient:
    client = CommandLineClient("c", spec)
    client.transport = transport
    return client


async def test_a_uid_below_min_uid_is_refused():
    client = client_with(IdTransport({"games2": 60, "alice": 1001}))
    with pytest.raises(AccountRefused, match="uid 60 is below this cluster's minUid 1000"):
        await client.check_account("games2")
    await client.check_account("alice")
    await client.check_account("alice")  # remembered: one lookup
    assert [argv[3] for argv, _ in client.transport.commands] == ["games2", "alice"]


async def test_an_account_that_does_not_exist_is_refused():
    client = client_with(IdTransport({}))
    with pytest.raises(AccountRefused, match="no such account"):
        await client.check_account("mallory")


async def test_a_denied_name_is_refused_before_any_command():
    client = client_with(IdTransport({"root": 0}))
    with pytest.raises(AccountRefused):
        await client.check_account("root")
    assert client.transport.commands == []


async def test_the_local_transport_asks_the_real_id_command(tmp_path):
    fake_id = tmp_path / "id"
    fake_id.write_text('#!/bin/sh\n[ "$3" = daemon2 ] && echo 2 && exit 0\nexit 1\n')
    fake_id.chmod(0o755)
    spec = {**LOCAL, "connection": {"environment": {"PATH": str(tmp_path)}}}
    client = CommandLineClient("c", spec)
    with pytest.raises(AccountRefused, match="uid 2 is below"):
        await client.check_account("daemon2")
    with pytest.raises(AccountRefused, match="no such account"):
        await client.check_account("nobody2")


# --- slurmrestd tokens ------------------------------------------------------------------------


def test_no_token_is_ever_signed_for_a_denied_name(monkeypatch):
    signed = []
    monkeypatch.setattr("jwt.encode", lambda payload, *_a, **_k: signed.append(payload) or "t")
    signer = TokenSigner(b"k" * 32, 600, cluster_spec=REST, query_user="slurm")
    for name in ("root", "sgeadmin", "Root", "daemon"):
        with pytest.raises(AccountRefused):
            signer.token(name)
    assert signed == []
    signer.token("slurm")  # the query user's own, for listings
    signer.token("alice")
    assert [p["sun"] for p in signed] == ["slurm", "alice"]


async def test_the_query_users_token_submits_no_job(monkeypatch):
    client = SlurmRestClient("rest", {**REST, "connection": {**REST["connection"]}})

    async def no_call(*_args, **_kwargs):
        raise AssertionError("nothing is sent to slurmrestd")

    monkeypatch.setattr(client, "_call", no_call)
    for name in ("slurm", "root"):
        with pytest.raises(AccountRefused):
            await client.submit("#!/bin/sh\n", name)


# --- the operator's handler -------------------------------------------------------------------


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict] = []
        self.events: list[tuple] = []
        self.core = self  # read_namespaced_secret must not be reached

    async def read_namespaced_secret(self, name: str, namespace: str):
        raise AssertionError(f"Secret {name} was read")

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patches.append(status)
        return True

    async def event(self, _ref, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def body_of(hub_user: str, unix_user: str) -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {"name": "nb-x", "namespace": "ns", "uid": "uid-x", "generation": 1},
            "spec": {
                "clusterName": "c",
                "profile": "small",
                "hubUser": hub_user,
                "unixUser": unix_user,
                "envSecretName": "nb-x-env",
            },
            "status": {},
        }
    )


@pytest.fixture
def kube(monkeypatch):
    fake = FakeKube()
    monkeypatch.setattr(registry, "kube", fake, raising=False)
    return fake


async def test_the_operator_fails_a_root_notebook_and_runs_nothing(kube, monkeypatch):
    monkeypatch.setattr(registry, "client", lambda *_: pytest.fail("no client for root"))
    with pytest.raises(kopf.PermanentError):
        await submit(body_of("root", "root"), LOCAL)
    assert [e[1] for e in kube.events] == ["AccountRefused"]
    assert kube.patches[-1]["phase"] == "Failed"
    assert "never run as root" in kube.patches[-1]["message"]


async def test_deleting_a_refused_notebook_runs_nothing_as_its_account(kube, monkeypatch):
    """Nothing was submitted for `root`: its deletion must not run commands as root either."""
    monkeypatch.setattr(registry, "client", lambda *_: pytest.fail("no command as root"))
    body = body_of("root", "root")
    await notebooks.cancel(
        body=body,
        spec=body.spec,
        status=body.status,
        uid="uid-x",
        retry=0,
        clusters_by_name={"c": [LOCAL]},
        logger=logging.getLogger("test"),
    )


async def test_the_operator_checks_the_uid_before_reading_or_submitting(kube, monkeypatch):
    transport = IdTransport({"alice": 999})
    monkeypatch.setattr(registry, "client", lambda *_: client_with(transport))
    with pytest.raises(kopf.PermanentError):
        await submit(body_of("alice", "alice"), LOCAL)
    assert [e[1] for e in kube.events] == ["AccountRefused"]
    assert [argv[0] for argv, _ in transport.commands] == ["id"]  # no sbatch
