"""The local stack's bookkeeping that decides what a command may touch: which network index a
stack's node owns (two stacks on one index tore down each other's namespace), and what `make dev`
keeps and writes for its user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from devstack import cluster, dev


@pytest.fixture
def claims(tmp_path, monkeypatch) -> set[int]:
    """Claims in a directory of the test's own; the indices whose namespace exists."""
    monkeypatch.setattr(cluster, "CLAIMS", tmp_path / "claims")
    existing: set[int] = set()
    monkeypatch.setattr(cluster.NodeNetwork, "exists", lambda self: self.index in existing)
    return existing


def stack(tmp_path: Path, name: str) -> Path:
    state = tmp_path / name
    state.mkdir()
    return state


def test_a_new_stack_takes_the_first_index_nobody_claims_or_uses(tmp_path, claims):
    claims.add(1)  # a namespace from before claims existed
    first = stack(tmp_path, "first")
    assert cluster.node_index(first) == 2
    assert cluster.node_index(stack(tmp_path, "second")) == 3
    assert cluster.node_index(first) == 2  # kept
    assert cluster.claimant(2) == first


def test_an_index_taken_while_its_stack_was_down_is_not_shared(tmp_path, claims):
    dev_state, test_state = stack(tmp_path, ".dev"), stack(tmp_path, ".test-node")
    (test_state / "node").mkdir()
    (test_state / "node" / "index").write_text("1\n")  # kept from an earlier run, unclaimed
    assert cluster.node_index(dev_state) == 1  # free: nobody claims it, no namespace
    claims.add(1)
    assert cluster.node_index(test_state) == 2
    assert cluster.claimant(1) == dev_state


def test_down_leaves_alone_the_namespace_of_the_stack_that_claims_the_index(
    tmp_path, claims, monkeypatch
):
    dev_state, test_state = stack(tmp_path, ".dev"), stack(tmp_path, ".test-node")
    cluster.node_index(dev_state)
    (test_state / "node").mkdir()
    (test_state / "node" / "index").write_text("1\n")
    stopped: list[Path] = []
    monkeypatch.setattr(cluster.Node, "stop", lambda node: stopped.append(node.state))
    monkeypatch.setattr(cluster.Node, "running", lambda node: False)
    monkeypatch.setattr(cluster, "stop_login_node", lambda node: None)
    monkeypatch.setattr(cluster.controlplane, "stop", lambda state: None)
    cluster.down(test_state)
    assert stopped == []
    cluster.down(dev_state)
    assert stopped == [dev_state.resolve()]


def test_a_claim_ends_when_its_stack_forgets_the_index(tmp_path, claims):
    gone = stack(tmp_path, "gone")
    cluster.node_index(gone)
    (gone / "node" / "index").unlink()
    assert cluster.claimant(1) is None
    assert cluster.node_index(stack(tmp_path, "next")) == 1


def test_make_dev_keeps_its_users_token_and_password_and_writes_them_0600(tmp_path):
    env = tmp_path / "env"
    first = dev.kept_settings(env)
    dev.write_env(tmp_path, "http://10.201.1.2:30800", first)
    assert env.stat().st_mode & 0o777 == 0o600
    assert dev.kept_settings(env) == first
    text = env.read_text()
    assert 'export HUB_URL="http://10.201.1.2:30800"\n' in text
    assert f'export KUBECONFIG="{tmp_path / "kubeconfig"}"\n' in text
    assert 'export BATCHNOTEBOOK_NAMESPACE="batchnotebook-system"\n' in text  # the CLI's Secrets


def test_every_make_dev_cluster_is_rendered_whole():
    words = {
        "@HUB_URL@": "http://10.201.9.2:30800",
        "@LOGIN_HOST@": "10.201.9.1",
        "@LOGIN_PORT@": "16465",
        "@SSH_HOST_KEY@": "ssh-ed25519 AAAA",
        "@SLURMREST_ADDRESS@": "10.201.9.1:6820",
        "@TRIXIE_HOST_KEY@": "ssh-ed25519 BBBB",
        "@REPO@": "/src",
    }
    for template in sorted(dev.CLUSTERS.glob("*.yaml.in")):
        rendered = yaml.safe_load(dev.render(template, words))
        assert "@" not in json.dumps(rendered), template
        assert rendered["spec"]["callbackURL"] == "http://10.201.9.2:30800/services/batchnotebook"
    with pytest.raises(RuntimeError, match="no value for @HUB_URL@"):
        dev.render(next(dev.CLUSTERS.glob("*.yaml.in")), {})
