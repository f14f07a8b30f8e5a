"""A notebook only uses its own Secret (issue 11): envSecretName pointing at another notebook's
Secret, whose tokens would go into a job its writer owns, is refused, and so is a Secret of the
right name that the notebook does not own."""

from __future__ import annotations

import base64

import kopf
import kopf_calls
import pytest
from kubernetes_asyncio.client import V1ObjectMeta, V1OwnerReference, V1Secret
from test_accounts import LOCAL, IdTransport, client_with

from batchnotebook_api import own_secret_name
from batchnotebook_operator.notebook_secret import SecretNotOwned, own_secret_data, owns
from batchnotebook_operator.registry import registry

TOKEN = base64.b64encode(b"alices-token").decode()


def secret(name: str, *owner_uids: str) -> V1Secret:
    references = [
        V1OwnerReference(api_version="batchnotebook.dev/v1alpha1", kind="BatchNotebook",
                         name="nb", uid=uid)
        for uid in owner_uids
    ]  # fmt: skip
    return V1Secret(
        metadata=V1ObjectMeta(name=name, owner_references=references or None),
        data={"BATCHNOTEBOOK_REPORT_TOKEN": TOKEN},
    )


class Kube:
    """Secrets by name; records which were read."""

    def __init__(self, *secrets: V1Secret) -> None:
        self.secrets = {s.metadata.name: s for s in secrets}
        self.read: list[str] = []
        self.core = self
        self.patches: list[dict] = []
        self.events: list[tuple] = []

    async def read_namespaced_secret(self, name: str, namespace: str) -> V1Secret:
        self.read.append(name)
        return self.secrets[name]

    async def patch_notebook_status(self, namespace: str, name: str, status: dict) -> bool:
        self.patches.append(status)
        return True

    async def event(self, _ref, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def notebook(name: str = "nb-mallory", uid: str = "uid-m", secret_name: str | None = None):
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"envSecretName": secret_name or own_secret_name(name)},
    }


def test_the_spawners_naming_rule_is_the_shared_one():
    from batchnotebook_spawner import spawner

    assert own_secret_name("nb-alice---default") == "nb-alice---default-env"
    assert spawner.own_secret_name is own_secret_name


def test_ownership_reads_models_and_dicts():
    assert owns(secret("s", "uid-a"), "uid-a") and not owns(secret("s", "uid-b"), "uid-a")
    assert not owns(secret("s"), "uid-a")
    as_dict = {"metadata": {"ownerReferences": [{"kind": "BatchNotebook", "uid": "uid-a"}]}}
    assert owns(as_dict, "uid-a")
    assert not owns({"metadata": {"ownerReferences": [{"kind": "Pod", "uid": "uid-a"}]}}, "uid-a")


async def test_another_notebooks_secret_is_refused_without_reading_it():
    kube = Kube(secret("nb-alice-env", "uid-alice"))
    with pytest.raises(SecretNotOwned, match="not this notebook's own Secret") as refused:
        await own_secret_data(kube, notebook(secret_name="nb-alice-env"))
    assert refused.value.final
    assert kube.read == []


async def test_a_secret_of_the_right_name_owned_by_another_notebook_is_refused():
    kube = Kube(secret("nb-mallory-env", "uid-alice"))
    with pytest.raises(SecretNotOwned, match="not owned by this BatchNotebook") as refused:
        await own_secret_data(kube, notebook())
    assert refused.value.final


async def test_a_secret_without_an_owner_yet_may_still_be_given_one():
    kube = Kube(secret("nb-mallory-env"))
    with pytest.raises(SecretNotOwned) as refused:
        await own_secret_data(kube, notebook())
    assert not refused.value.final  # the spawner adds the reference right after creating


async def test_the_own_secret_is_read():
    kube = Kube(secret("nb-mallory-env", "uid-m"))
    data = await own_secret_data(kube, notebook())
    assert data == {"BATCHNOTEBOOK_REPORT_TOKEN": "alices-token"}


# --- the operator's handler -------------------------------------------------------------------


def body(secret_name: str) -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {"name": "nb-mallory", "namespace": "ns", "uid": "uid-m", "generation": 1},
            "spec": {
                "clusterName": "c",
                "profile": "small",
                "hubUser": "mallory",
                "unixUser": "mallory",
                "envSecretName": secret_name,
            },
            "status": {},
        }
    )


async def submit(kube: Kube, secret_name: str, monkeypatch, retry: int = 0) -> None:
    monkeypatch.setattr(registry, "kube", kube, raising=False)
    transport = IdTransport({"mallory": 1002})
    monkeypatch.setattr(registry, "client", lambda *_: client_with(transport))
    await kopf_calls.submit(body(secret_name), LOCAL, retry)


async def test_the_operator_refuses_a_foreign_env_secret_name(monkeypatch):
    kube = Kube(secret("nb-alice-env", "uid-alice"))
    with pytest.raises(kopf.PermanentError):
        await submit(kube, "nb-alice-env", monkeypatch)
    assert [e[1] for e in kube.events] == ["SecretNotOwned"]
    assert "nb-alice-env" in kube.patches[-1]["message"]
    assert kube.read == []


async def test_the_operator_refuses_an_unowned_secret_once_the_spawner_had_time(monkeypatch):
    kube = Kube(secret("nb-mallory-env"))
    with pytest.raises(kopf.TemporaryError):
        await submit(kube, "nb-mallory-env", monkeypatch, retry=0)
    assert not kube.events
    with pytest.raises(kopf.PermanentError):
        await submit(kube, "nb-mallory-env", monkeypatch, retry=10)
    assert [e[1] for e in kube.events] == ["SecretNotOwned"]
