"""slurmrestd's query user defaults to the operator's own unprivileged account, not Slurm's admin
(issue 11, least privilege): with no queryUser in the spec no token is signed for SlurmUser."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from batchnotebook_api import accounts
from batchnotebook_api.accounts import AccountRefused
from batchnotebook_operator.clients.slurmrest.client import SlurmRestClient
from batchnotebook_operator.clients.slurmrest.token import TokenSigner

REPO = Path(__file__).resolve().parents[2]
# A slurmrest BatchCluster that leaves queryUser out.
REST = {
    "scheduler": "slurm",
    "callbackURL": "https://hub.example.org",
    "connection": {"type": "slurmrest", "slurmrest": {"url": "http://rest"}},
}


def crd_query_user() -> dict:
    crd = yaml.safe_load((REPO / "crds/batchnotebook.dev_batchclusters.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"]["connection"]["properties"]["slurmrest"]["properties"]["queryUser"]


def test_the_default_query_user_is_no_admin_and_the_crd_agrees():
    assert accounts.DEFAULT_QUERY_USER not in ("slurm", "root")
    assert crd_query_user()["default"] == accounts.DEFAULT_QUERY_USER
    assert SlurmRestClient("rest", REST).query_user == accounts.DEFAULT_QUERY_USER


def test_with_the_default_no_token_is_signed_for_slurmuser(monkeypatch):
    signed = []
    monkeypatch.setattr("jwt.encode", lambda payload, *_a, **_k: signed.append(payload) or "t")
    signer = TokenSigner(b"k" * 32, 600, cluster_spec=REST)
    for admin in ("slurm", "root"):
        with pytest.raises(AccountRefused):
            signer.token(admin)
    signer.token(accounts.DEFAULT_QUERY_USER)  # its own, for listings
    assert [p["sun"] for p in signed] == [accounts.DEFAULT_QUERY_USER]


def test_no_notebook_runs_as_the_default_query_user():
    assert accounts.service_accounts(REST) == {accounts.DEFAULT_QUERY_USER}
    assert accounts.refusal(REST, accounts.DEFAULT_QUERY_USER)
